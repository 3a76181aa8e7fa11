"""The Hub files ship only what a model uses: the configs are leaves (they import nothing of the package), so the
lesion folder carries no classifier code, and every bundled folder carries exactly the code it loads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from tests.helpers.clean_process import run_isolated
from tests.helpers.paths import REPO_ROOT
from training.export.refresh_code import code_files, stale_files, unused_files
from usvcl_hf import LesionSegmentationModel, configuration_lesion, configuration_usvcl, image_processing_usvcl

PACKAGE = REPO_ROOT / "usvcl_hf"
CONFIGS = ("configuration_usvcl.py", "configuration_lesion.py")
MODEL_FOLDERS = sorted(path for path in (REPO_ROOT / "models").glob("*") if (path / "config.json").is_file())
LESION_FOLDER = REPO_ROOT / "models" / "usvcl-lesion-busbra"
LESION_CODE = ["configuration_lesion.py", "image_processing_usvcl.py", "losses_lesion.py", "modeling_lesion.py"]


def package_imports(path: Path) -> list[str]:
    """The modules of `usvcl_hf` that `path` imports (relative imports, or absolute ones of the package)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("usvcl_hf")):
            found.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names if alias.name.startswith("usvcl_hf"))
    return found


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_import_nothing_of_the_package(name: str) -> None:
    assert package_imports(PACKAGE / name) == [], f"{name} must be a leaf: a Hub folder ships what it imports"


def test_the_resize_modes_agree() -> None:
    assert configuration_usvcl.RESIZE_MODES == configuration_lesion.RESIZE_MODES == image_processing_usvcl.RESIZE_MODES


@pytest.mark.skipif(not LESION_FOLDER.is_dir(), reason=f"{LESION_FOLDER} is not exported yet")
def test_the_lesion_folder_ships_no_classifier_code() -> None:
    assert code_files(LESION_FOLDER) == LESION_CODE
    assert sorted(path.name for path in LESION_FOLDER.glob("*.py")) == LESION_CODE


@pytest.mark.parametrize("folder", MODEL_FOLDERS, ids=lambda folder: folder.name)
def test_each_bundled_folder_carries_exactly_the_code_it_loads(folder: Path) -> None:
    assert stale_files(folder) == [], "run `python -m training.export.refresh_code models/*/`"
    assert unused_files(folder) == [], "run `python -m training.export.refresh_code models/*/`"


@pytest.mark.skipif(not LESION_FOLDER.is_dir(), reason=f"{LESION_FOLDER} is not exported yet")
def test_the_bundled_lesion_folder_loads_in_a_clean_offline_process(tmp_path: Path) -> None:
    pixels = torch.zeros(1, 1, 64, 64)
    with torch.no_grad():
        expected = LesionSegmentationModel.from_pretrained(LESION_FOLDER).eval()(pixels).lesion_probability
    result = run_isolated(
        f"""
        import torch
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation
        folder = {str(LESION_FOLDER)!r}
        AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        model = AutoModelForSemanticSegmentation.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            presence = model(torch.zeros(1, 1, 64, 64)).lesion_probability
        result = dict(module=type(model).__module__, presence=presence.tolist())
        """,
        cwd=tmp_path,
    )
    assert "transformers_modules" in result["module"]
    torch.testing.assert_close(torch.tensor(result["presence"]), expected, rtol=0, atol=1e-5)
