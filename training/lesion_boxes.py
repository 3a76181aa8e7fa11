"""Lesion boxes: the bounding box of a lesion mask, the crop around it that a lesion-crop classifier sees, and the
boxes of each fold's segmenter on its inner-validation and test images as `training.train_lesion` writes them
(boxes.csv, `BOX_FILE_COLUMNS`).

A box is `(x0, y0, x1, y1)` in pixels of the stored image, ends exclusive; `None` = no lesion found (the crop is
then the whole image). The crop adds `margin` times the box's width (height) on the left and right (top and bottom),
clipped to the image: the lesion's border and the tissue around it (posterior shadowing) stay in view.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

Box = tuple[int, int, int, int]
BoxKey = tuple[int, str, str]  # (fold, "val" | "test", image id)
BOX_COLUMNS = ["box_x0", "box_y0", "box_x1", "box_y1"]
BOX_FILE_COLUMNS = ["fold", "split", "image_id", *BOX_COLUMNS]  # boxes.csv: a fold's validation / test images


def mask_box(mask: np.ndarray) -> Box | None:
    """`(x0, y0, x1, y1)` bounding box of the True pixels of an `(H, W)` mask; None when it has none."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def expand_box(box: Box, margin: float, height: int, width: int) -> Box:
    """`box` grown by `margin` x its width / height on each side, clipped to an `(height, width)` image."""
    x0, y0, x1, y1 = box
    grow_x, grow_y = math.ceil(margin * (x1 - x0)), math.ceil(margin * (y1 - y0))
    return max(0, x0 - grow_x), max(0, y0 - grow_y), min(width, x1 + grow_x), min(height, y1 + grow_y)


def crop_to_box(image: np.ndarray, box: Box | None, margin: float) -> np.ndarray:
    """The `(h, w)` part of an `(H, W)` image around `box` with `margin` (the whole image when `box` is None)."""
    if box is None:
        return image
    x0, y0, x1, y1 = expand_box(box, margin, *image.shape[:2])
    return image[y0:y1, x0:x1]


def box_cells(box: Box | None) -> list[str]:
    """`BOX_COLUMNS` values of a box for a CSV row (empty cells for None)."""
    return [""] * len(BOX_COLUMNS) if box is None else [str(value) for value in box]


def read_boxes(paths: Sequence[str | Path]) -> dict[BoxKey, Box | None]:
    """(fold, split, image id) -> the box of that fold's segmenter, from `training.train_lesion` boxes.csv files
    (folds may be split over several runs). Raises `ValueError` naming the file when it is not one or repeats a
    fold's image."""
    boxes: dict[BoxKey, Box | None] = {}
    seen: set[tuple[int, str]] = set()  # (fold, image id)
    for path in paths:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [name for name in BOX_FILE_COLUMNS if name not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: not a lesion boxes file (no column {missing[0]!r}); "
                                 "`python -m training.train_lesion` writes boxes.csv.")
            for row in reader:
                key = (int(row["fold"]), row["split"], row["image_id"])
                if (key[0], key[2]) in seen:
                    raise ValueError(f"{path}: fold {key[0]} has two boxes for image {key[2]!r}.")
                seen.add((key[0], key[2]))
                cells = [row[name] for name in BOX_COLUMNS]
                boxes[key] = None if "" in cells else tuple(int(cell) for cell in cells)
    return boxes


__all__ = ["BOX_COLUMNS", "BOX_FILE_COLUMNS", "Box", "BoxKey", "box_cells", "crop_to_box", "expand_box", "mask_box",
           "read_boxes"]
