"""The site's labelled images: a CSV `image,label` (optionally `patient`) or a folder of `benign/` and `malignant/`."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path

LABELS = ("benign", "malignant")  # label k's name: what a site's CSV or sub-folders may say
MIN_PER_CLASS = 20  # fewer images of either class than this are refused: too few to fit and to check a threshold
EXIT_BAD_INPUT = 2
SHOWN_FILES = 10  # files named in one message (then "and N more")


class SiteInputError(ValueError):
    """Input the command refuses; the message names the files and the reason (exit status 2, nothing written)."""


@dataclasses.dataclass(frozen=True)
class SiteItem:
    """One labelled image or clip of the site."""

    path: Path
    label: int  # index in LABELS: 0 benign, 1 malignant
    group: str  # the patient (CSV column `patient`), else the file itself: cross-validation keeps a group together


def name_files(paths: Sequence[object]) -> str:
    """`a, b, c` (at most SHOWN_FILES names, then how many more)."""
    shown = ", ".join(str(path) for path in paths[:SHOWN_FILES])
    return shown + (f" and {len(paths) - SHOWN_FILES} more" if len(paths) > SHOWN_FILES else "")


def csv_items(path: Path) -> list[SiteItem]:
    """Rows of a CSV `image,label[,patient]`; image paths relative to the CSV's folder."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SiteInputError(f"{path}: cannot be read as a CSV ({error}).") from error
    columns = set(rows[0]) if rows else set()
    if not {"image", "label"} <= columns:
        raise SiteInputError(f"{path}: needs columns `image` and `label` (benign or malignant); has {sorted(columns)}.")
    unknown = [f"{row['image']} ({row['label']!r})" for row in rows if row["label"].strip().lower() not in LABELS]
    if unknown:
        raise SiteInputError(f"{path}: unknown labels (use {' or '.join(LABELS)}): {name_files(unknown)}.")
    items = [SiteItem(path.parent / row["image"].strip(), LABELS.index(row["label"].strip().lower()),
                      (row.get("patient") or "").strip() or row["image"].strip()) for row in rows]
    missing = [item.path for item in items if not item.path.is_file()]
    if missing:
        raise SiteInputError(f"{path}: {len(missing)} listed files are missing: {name_files(missing)}.")
    return items


def folder_items(root: Path) -> list[SiteItem]:
    """Every file under `root/benign/` and `root/malignant/` (each its own patient); other entries are refused."""
    entries = sorted(path for path in root.iterdir() if not path.name.startswith("."))
    unknown = [path.name for path in entries if path.name not in LABELS or not path.is_dir()]
    if unknown:
        raise SiteInputError(f"{root}: unknown labels (sub-folders must be {' and '.join(LABELS)}): "
                             f"{name_files(unknown)}.")
    items = []
    for label, name in enumerate(LABELS):
        files = sorted(path for path in (root / name).rglob("*") if path.is_file() and not path.name.startswith("."))
        items += [SiteItem(path, label, str(path.relative_to(root))) for path in files]
    return items


def check_counts(items: Sequence[SiteItem], source: Path) -> None:
    """Refuse fewer than MIN_PER_CLASS images of either class."""
    counts = [sum(item.label == label for item in items) for label in range(len(LABELS))]
    short = [f"{count} {name}" for name, count in zip(LABELS, counts) if count < MIN_PER_CLASS]
    if short:
        raise SiteInputError(f"{source}: {' and '.join(short)} images; site calibration needs at least "
                             f"{MIN_PER_CLASS} of each class.")


def read_labels(source: Path) -> list[SiteItem]:
    """The labelled items of a CSV or a class folder, checked (labels known, files present, enough per class)."""
    if source.is_dir():
        items = folder_items(source)
    elif source.is_file():
        items = csv_items(source)
    else:
        raise SiteInputError(f"{source}: no such CSV file or folder.")
    check_counts(items, source)
    return items
