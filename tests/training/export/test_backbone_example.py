"""The README's "use the backbone for your own task" example runs as written, offline, without usvcl_hf."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tests.helpers import export_models
from tests.helpers.paths import REPO_ROOT

SNIPPET_SOURCES = (REPO_ROOT / "docs" / "backbone.md",)
MARKER = "<!-- backbone-example -->"
SNIPPET_PATTERN = re.compile(re.escape(MARKER) + r"\s*```python\n(.*?)```", re.DOTALL)
CLASSES = ("benign", "malignant")
IMAGES_PER_CLASS = 3
IMAGE_SHAPE = (72, 96)
TIMEOUT_S = 300
BLOCK_PACKAGE = (
    "import sys\n"
    "sys.modules['usvcl_hf'] = None  # a user of the Hub model does not have the package\n"
    "sys.modules['training'] = None\n"
)


def find_snippet() -> str | None:
    """The python block after the marker: README.md first, then the helper's notes; `None` if neither has it."""
    for source in SNIPPET_SOURCES:
        if source.is_file():
            match = SNIPPET_PATTERN.search(source.read_text())
            if match:
                return match.group(1)
    return None


def write_images(folder: Path) -> Path:
    """`folder/<class>/*.png`: small greyscale images, brighter for the second class."""
    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True)
        for number in range(IMAGES_PER_CLASS):
            pixels = rng.integers(0, 120, IMAGE_SHAPE) + 100 * index
            PIL.Image.fromarray(pixels.astype(np.uint8)).save(folder / name / f"{number}.png")
    return folder


SNIPPET = find_snippet()
BUNDLED_BACKBONE = REPO_ROOT / "models" / "usvcl-backbone"  # the block's default USVCL_BACKBONE
EXAMPLE_IMAGES = REPO_ROOT / "examples" / "by_class"  # the block's default USVCL_IMAGES


def run_snippet(cwd: Path, home: Path, **variables: str) -> subprocess.CompletedProcess:
    """The block in a clean, isolated, offline Python (no usvcl_hf, no training) with these environment variables."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "USVCL_BACKBONE",
                                                                             "USVCL_IMAGES")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(home), **variables})
    return subprocess.run([sys.executable, "-I", "-c", BLOCK_PACKAGE + SNIPPET], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.mark.slow
@pytest.mark.skipif(SNIPPET is None, reason=f"no python block after {MARKER} in {[str(s) for s in SNIPPET_SOURCES]}")
def test_backbone_example_runs(tmp_path: Path) -> None:
    backbone = export_models.export_tiny_backbone(tmp_path / "models")
    images = write_images(tmp_path / "my_images")
    work = tmp_path / "work"
    work.mkdir()
    completed = run_snippet(work, tmp_path / "hf_home", USVCL_BACKBONE=str(backbone), USVCL_IMAGES=str(images))
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"{IMAGES_PER_CLASS * len(CLASSES)} images, {len(CLASSES)} classes, training accuracy" in completed.stdout


@pytest.mark.slow
@pytest.mark.skipif(SNIPPET is None, reason=f"no python block after {MARKER}")
@pytest.mark.skipif(not BUNDLED_BACKBONE.is_dir(), reason=f"{BUNDLED_BACKBONE} is not exported yet (README command)")
def test_backbone_example_runs_as_written(tmp_path: Path) -> None:
    """From the repository root, without the variables: the bundled encoder and the example images."""
    completed = run_snippet(REPO_ROOT, tmp_path / "hf_home")
    assert completed.returncode == 0, completed.stderr[-3000:]
    images = sorted(EXAMPLE_IMAGES.glob("*/*.png"))
    assert f"{len(images)} images, 2 classes, training accuracy" in completed.stdout
