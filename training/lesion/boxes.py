"""Lesion boxes of each fold's segmenter on its inner-validation and test images, as `training.lesion.train` writes
them (boxes.csv, `BOX_FILE_COLUMNS`); the box geometry (a mask's box, the crop around it) is
`usvcl_hf.lesion_crop`'s, which inference uses too.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from usvcl_hf.lesion_crop import Box

BoxKey = tuple[int, str, str]  # (fold, "val" | "test", image id)
BOX_COLUMNS = ["box_x0", "box_y0", "box_x1", "box_y1"]
BOX_FILE_COLUMNS = ["fold", "split", "image_id", *BOX_COLUMNS]  # boxes.csv: a fold's validation / test images


def box_cells(box: Box | None) -> list[str]:
    """`BOX_COLUMNS` values of a box for a CSV row (empty cells for None)."""
    return [""] * len(BOX_COLUMNS) if box is None else [str(value) for value in box]


def read_boxes(paths: Sequence[str | Path]) -> dict[BoxKey, Box | None]:
    """(fold, split, image id) -> the box of that fold's segmenter, from `training.lesion.train` boxes.csv files
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
                                 "`python -m training.lesion` writes boxes.csv.")
            for row in reader:
                key = (int(row["fold"]), row["split"], row["image_id"])
                if (key[0], key[2]) in seen:
                    raise ValueError(f"{path}: fold {key[0]} has two boxes for image {key[2]!r}.")
                seen.add((key[0], key[2]))
                cells = [row[name] for name in BOX_COLUMNS]
                boxes[key] = None if "" in cells else tuple(int(cell) for cell in cells)
    return boxes


__all__ = ["BOX_COLUMNS", "BOX_FILE_COLUMNS", "BoxKey", "box_cells", "read_boxes"]
