"""Which files become rows, with which ids: folders, metadata CSVs, the BUS-BRA layout and its folds."""

from __future__ import annotations

import argparse
import csv
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from usvcl_hf.runtime.video import IMAGE_SUFFIXES, SUPPORTED_SUFFIXES

BUS_BRA_PRESET = "bus_bra"
BUS_BRA_METADATA = "bus_data.csv"
BUS_BRA_FOLDS = "5-fold-cv.csv"
BUS_BRA_IMAGES = "Images"
BUS_BRA_MASKS = "Masks"
BUS_BRA_LABELS = ("benign", "malignant")
NO_FOLD = -1
SPLIT_NAMES = {"1": "train", "0": "val"}  # valid_k value -> split; anything else (NaN, empty) -> "test"
SPLIT_PREFIX = "valid_"
TEST_SPLIT = "test"


class PrepareError(RuntimeError):
    """A fatal problem with the input as a whole (empty input, nothing readable, --strict failure)."""


@dataclass
class FileJob:
    """One file to decode and the ids its rows get."""

    path: Path
    source: str  # path relative to the input folder (posix)
    video_id: str
    patient_id: str
    label: str | None = None
    image_id: str | None = None
    device: str | None = None  # the scanner (metadata --device-column), for cross-device splits


def list_files(root: Path, suffixes: frozenset[str]) -> list[Path]:
    """All files under ``root`` with one of ``suffixes`` (case-insensitive), sorted by relative path."""
    files = [path for path in root.rglob("*") if path.is_file() and path.suffix.lower() in suffixes]
    return sorted(files, key=lambda path: path.relative_to(root).as_posix())


def relative_id(path: Path, root: Path) -> str:
    """Relative posix path without suffix, used as a video or image id."""
    return path.relative_to(root).with_suffix("").as_posix()


def read_csv_rows(csv_path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts (utf-8, BOM tolerated)."""
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def require_columns(csv_path: Path, rows: list[dict[str, str]], columns: Sequence[str]) -> None:
    """Fail with a clear message when a CSV lacks a needed column."""
    present = set(rows[0]) if rows else set()
    missing = [column for column in columns if column not in present]
    if missing:
        raise PrepareError(f"{csv_path}: missing column(s) {missing}; columns are {sorted(present)}")


def metadata_lookup(csv_path: Path, file_column: str, value_column: str) -> dict[str, str]:
    """Map file entries (as written, and by bare name) of a metadata CSV to ``value_column``."""
    rows = read_csv_rows(csv_path)
    require_columns(csv_path, rows, [file_column, value_column])
    lookup: dict[str, str] = {}
    for row in rows:
        entry = row[file_column].strip().replace("\\", "/")
        lookup[entry] = row[value_column].strip()
        lookup.setdefault(Path(entry).name, row[value_column].strip())
    return lookup


def patient_from_metadata(lookup: dict[str, str], source: str) -> str | None:
    """Patient of a file by relative path, then by bare file name."""
    return lookup.get(source) or lookup.get(Path(source).name)


def choose_patient_ids(args: argparse.Namespace, sources: list[str]) -> tuple[Callable[[str], str | None], str]:
    """A function source -> patient id, and a description of where the ids come from."""
    if args.patient_regex:
        pattern = re.compile(args.patient_regex)
        if pattern.groups < 1:
            raise PrepareError(f"--patient-regex {args.patient_regex!r} needs a capture group")

        def from_regex(source: str) -> str | None:
            match = pattern.search(source)
            return match.group(1) if match else None

        return from_regex, f"regex {args.patient_regex!r} on the relative path"
    if args.metadata:
        lookup = metadata_lookup(Path(args.metadata), args.file_column, args.patient_column)
        return partial(patient_from_metadata, lookup), f"metadata CSV {args.metadata} (column {args.patient_column})"
    if sources and all("/" in source for source in sources):
        return (lambda source: Path(source).parent.name), "parent folder name (per-patient subfolders)"
    return (lambda source: str(Path(source).with_suffix(""))), "each video is its own patient (no ids given)"


def build_video_jobs(args: argparse.Namespace, root: Path) -> tuple[list[FileJob], list[dict], str]:
    """Jobs for every clip under ``root``, files without a patient id reported as skipped."""
    files = list_files(root, SUPPORTED_SUFFIXES)
    sources = [path.relative_to(root).as_posix() for path in files]
    patient_of, id_source = choose_patient_ids(args, sources)
    jobs, skipped = [], []
    for path, source in zip(files, sources, strict=True):
        patient_id = patient_of(source)
        if not patient_id:
            skipped.append({"source": source, "reason": f"no patient id ({id_source})"})
            continue
        jobs.append(FileJob(path=path, source=source, video_id=relative_id(path, root), patient_id=patient_id))
    return jobs, skipped, id_source


def is_bus_bra(root: Path) -> bool:
    """True when ``root`` looks like the BUS-BRA release (bus_data.csv next to Images/)."""
    return (root / BUS_BRA_METADATA).is_file() and (root / BUS_BRA_IMAGES).is_dir()


def metadata_columns(path: Path) -> list[str]:
    """The header of a metadata CSV (empty when the file is missing: the reader names that later)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return next(csv.reader(handle), [])


def apply_bus_bra_preset(args: argparse.Namespace, root: Path) -> None:
    """Fill in BUS-BRA's metadata, folds and column names unless given explicitly."""
    args.metadata = args.metadata or str(root / BUS_BRA_METADATA)
    args.folds = args.folds or str(root / BUS_BRA_FOLDS)
    args.file_column, args.patient_column, args.label_column = "ID", "Case", "Pathology"
    if args.device_column is None and "Device" in metadata_columns(Path(args.metadata)):
        args.device_column = "Device"  # the scanner, kept when the folder's metadata has it
    args.file_template = f"{BUS_BRA_IMAGES}/{{}}.png"
    args.fold_id_column = "ID"
    args.label_names = list(BUS_BRA_LABELS)
    if args.masks is None and (root / BUS_BRA_MASKS).is_dir():
        args.masks = str(root / BUS_BRA_MASKS)


def find_image(root: Path, entry: str, template: str) -> Path:
    """Path of a metadata file entry, formatted by ``template`` (``{}`` = entry)."""
    return root / template.format(entry)


def build_image_jobs(args: argparse.Namespace, root: Path) -> tuple[list[FileJob], list[dict], str]:
    """Jobs for labelled images from a metadata CSV or class folders."""
    if args.metadata:
        return metadata_image_jobs(args, root)
    return class_folder_jobs(args, root)


def metadata_image_jobs(args: argparse.Namespace, root: Path) -> tuple[list[FileJob], list[dict], str]:
    """One job per metadata row (sorted by file entry); missing files are reported as skipped."""
    csv_path = Path(args.metadata)
    rows = read_csv_rows(csv_path)
    require_columns(csv_path, rows, [args.file_column, args.patient_column, args.label_column,
                                     *([args.device_column] if args.device_column else [])])
    jobs, skipped = [], []
    for row in sorted(rows, key=lambda row: row[args.file_column]):
        entry = row[args.file_column].strip()
        path = find_image(root, entry, args.file_template)
        source = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        if not path.is_file():
            skipped.append({"source": source, "reason": "file listed in metadata not found"})
            continue
        patient_id = row[args.patient_column].strip()
        jobs.append(FileJob(path=path, source=source, video_id=patient_id, patient_id=patient_id,
                            label=row[args.label_column].strip(), image_id=Path(entry).with_suffix("").name
                            if Path(entry).suffix.lower() in IMAGE_SUFFIXES else entry,
                            device=row[args.device_column].strip() if args.device_column else None))
    return jobs, skipped, f"metadata CSV {csv_path} (column {args.patient_column})"


def class_folder_jobs(args: argparse.Namespace, root: Path) -> tuple[list[FileJob], list[dict], str]:
    """One job per image in DIR/<class>/...; patient ids by --patient-regex, else one patient per image."""
    files = [path for path in list_files(root, SUPPORTED_SUFFIXES) if len(path.relative_to(root).parts) >= 2]
    pattern = re.compile(args.patient_regex) if args.patient_regex else None
    jobs, skipped = [], []
    for path in files:
        source = path.relative_to(root).as_posix()
        image_id = relative_id(path, root)
        match = pattern.search(source) if pattern else None
        if pattern and not match:
            skipped.append({"source": source, "reason": f"no patient id (regex {args.patient_regex!r})"})
            continue
        patient_id = match.group(1) if match else image_id
        jobs.append(FileJob(path=path, source=source, video_id=patient_id, patient_id=patient_id,
                            label=path.relative_to(root).parts[0], image_id=image_id))
    id_source = f"regex {args.patient_regex!r}" if pattern else "each image is its own patient (no ids given)"
    return jobs, skipped, id_source


def read_folds(args: argparse.Namespace) -> tuple[dict[str, int], dict[str, dict[str, str]], list[str]]:
    """Test fold per image id, split per image id and fold key, and the fold keys (from valid_k columns)."""
    if not args.folds:
        return {}, {}, []
    csv_path = Path(args.folds)
    rows = read_csv_rows(csv_path)
    require_columns(csv_path, rows, [args.fold_id_column, args.fold_column])
    fold_keys = [column[len(SPLIT_PREFIX):] for column in rows[0] if column.startswith(SPLIT_PREFIX)]
    test_fold, splits = {}, {}
    for row in rows:
        image_id = row[args.fold_id_column].strip()
        test_fold[image_id] = parse_fold(row[args.fold_column])
        splits[image_id] = {key: SPLIT_NAMES.get(parse_split(row[SPLIT_PREFIX + key]), TEST_SPLIT) for key in fold_keys}
    return test_fold, splits, fold_keys


def parse_fold(value: str) -> int:
    """An integer fold number, NO_FOLD when empty or NaN."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return NO_FOLD
    return NO_FOLD if math.isnan(number) else int(number)


def parse_split(value: str) -> str:
    """Normalise a valid_k cell ("1", "1.0", "0", "NaN", "") to "1", "0" or ""."""
    fold = parse_fold(value)
    return "" if fold == NO_FOLD else str(fold)


def existing_input(folder: str) -> Path:
    """The input folder as a resolved path, or a clear error."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise PrepareError(f"input folder {folder} does not exist")
    return root


def ensure_jobs(jobs: list[FileJob], skipped: list[dict], root: Path) -> None:
    """Fail when there is nothing to decode."""
    if not jobs:
        detail = f" ({len(skipped)} file(s) without usable ids)" if skipped else ""
        raise PrepareError(f"no supported input files in {root}{detail}")

