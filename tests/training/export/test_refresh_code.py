"""`python -m training.export.refresh_code`: Hub code copies refreshed from usvcl_hf, weights and check untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import app
from tests.helpers.paths import REPO_ROOT
from training.export import refresh_code

BUNDLED_MODEL = REPO_ROOT / app.DEFAULT_MODEL  # the default model, whichever ships
KEPT_FILES = ("model.safetensors", "config.json", "export_check.json", "README.md")


@pytest.mark.skipif(not BUNDLED_MODEL.is_dir(), reason=f"{BUNDLED_MODEL} is not exported yet")
def test_refresh_copies_the_code_and_keeps_everything_else(tmp_path: Path) -> None:
    folder = shutil.copytree(BUNDLED_MODEL, tmp_path / "model")
    (folder / "modeling_usvcl.py").write_text((folder / "modeling_usvcl.py").read_text() + "\n# an old copy\n")
    (folder / "losses.py").unlink()
    kept = {name: (folder / name).read_bytes() for name in KEPT_FILES}
    assert refresh_code.main([str(folder), "--check"]) == 1
    assert set(refresh_code.stale_files(folder)) == {"modeling_usvcl.py", "losses.py"}
    assert refresh_code.main([str(folder)]) == 0
    expected = {"configuration_usvcl.py", "modeling_usvcl.py", "losses.py", "image_processing_usvcl.py",
                "pipeline_usvcl.py", "lesion_crop.py", "configuration_lesion.py"}  # auto_map + custom_pipelines
    assert set(refresh_code.code_files(folder)) == expected
    for name in expected:
        assert (folder / name).read_bytes() == (refresh_code.PACKAGE_DIR / name).read_bytes(), name
    assert {name: (folder / name).read_bytes() for name in KEPT_FILES} == kept
    assert refresh_code.main([str(folder), "--check"]) == 0
    assert not list(folder.glob(".*tmp-*"))


def test_refresh_refuses_a_folder_that_is_no_export(tmp_path: Path) -> None:
    assert refresh_code.main([str(tmp_path)]) == 1
    assert not list(tmp_path.iterdir())
