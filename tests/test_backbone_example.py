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
import test_export  # the export tests' model builders (tests/ is on the path)

REPO_ROOT = Path(__file__).resolve().parents[1]
SNIPPET_SOURCES = (REPO_ROOT / "README.md",)
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


@pytest.mark.slow
@pytest.mark.skipif(SNIPPET is None, reason=f"no python block after {MARKER} in {[str(s) for s in SNIPPET_SOURCES]}")
def test_backbone_example_runs(tmp_path: Path) -> None:
    backbone = test_export.export_tiny_backbone(tmp_path / "models")
    images = write_images(tmp_path / "my_images")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"),
                "USVCL_BACKBONE": str(backbone), "USVCL_IMAGES": str(images)})
    work = tmp_path / "work"
    work.mkdir()
    completed = subprocess.run([sys.executable, "-I", "-c", BLOCK_PACKAGE + SNIPPET], cwd=work, env=env,
                               capture_output=True, text=True, timeout=TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"{IMAGES_PER_CLASS * len(CLASSES)} images, {len(CLASSES)} classes, training accuracy" in completed.stdout
