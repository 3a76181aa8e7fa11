"""The exported folder's finishing touches: published file modes and the evaluation plots."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger(__name__)
CLASSIFIER_FIGURES = ("roc", "reliability", "label_efficiency", "confusion")

LABEL_EFFICIENCY_FILE = "label_efficiency.png"

PUBLISHED_FILE_MODE = 0o644

PUBLISHED_DIR_MODE = 0o755


def finish_folder(folder: Path) -> None:
    """Drop `__pycache__` folders loading may have left; make files 0644 and folders 0755 (they are published)."""
    for cache in folder.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(PUBLISHED_DIR_MODE if path.is_dir() else PUBLISHED_FILE_MODE)


def copy_figures(results: dict[str, Any], results_dir: Path, folder: Path) -> dict[str, str]:
    """Copy the evaluation plots named in `results["figures"]` that exist; return `{key: file name}`."""
    copied = {}
    for key in CLASSIFIER_FIGURES:
        name = (results.get("figures") or {}).get(key)
        if name and (results_dir / name).is_file():
            target = f"{key}.png" if Path(name).suffix == ".png" else Path(name).name
            shutil.copyfile(results_dir / name, folder / target)
            copied[key] = target
        elif name:
            LOGGER.warning("figure %s (%s) is missing; the card leaves it out", key, results_dir / name)
    return copied


__all__ = ["CLASSIFIER_FIGURES", "copy_figures", "finish_folder"]
