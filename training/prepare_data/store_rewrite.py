"""Write a copy of a `datasets` image store with every image re-encoded by a function (same rows and columns)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets
from PIL import Image

from training.atomic import atomic_folder

COPIED_REPORTS = ("summary.json", "skipped.json")


def rewrite_store_images(
    source: Path,
    target: Path,
    encode: Callable[[Image.Image], bytes],
    progress: Callable[[Iterable], Iterable] = lambda images: images,
) -> int:
    """Save `source` as `target` with each image replaced by `encode(image)`; returns the new store's size in bytes.

    `target` is written to a temporary sibling first and renamed, so an interrupted run leaves no half store.
    """
    store = datasets.load_from_disk(str(source))
    encoded = [{"bytes": encode(image), "path": None} for image in progress(store["image"])]
    rewritten = store.remove_columns("image").add_column("image", encoded, feature=datasets.Image())
    rewritten = rewritten.select_columns(store.column_names)  # same column order as the source
    with atomic_folder(target) as staging:
        rewritten.save_to_disk(str(staging))
        for report in COPIED_REPORTS:
            if (source / report).exists():
                shutil.copy2(source / report, staging / report)
    return sum(path.stat().st_size for path in target.rglob("*") if path.is_file())
