"""Turn folders of clips or labelled images into a frame store (``datasets.Dataset.save_to_disk``).

Videos: ``python -m training.prepare_data videos --input DIR --output DIR [--patient-regex RE | --metadata CSV]``
one row per kept frame: image, video_id, patient_id, frame_index, source.

Images: ``python -m training.prepare_data images --input DIR --output DIR [--metadata CSV] [--folds CSV]``
class folders (DIR/<class>/*.png) or a metadata CSV; BUS-BRA (``bus_data.csv`` + ``Images/``) is detected
automatically (or ``--preset bus_bra``): image, image_id, patient_id, video_id (= patient), frame_index, source,
label, fold and one ``split_k`` column per ``valid_k`` column of the folds CSV.

Files are decoded in parallel (one process per core), results are kept in sorted-path order (a rerun gives the
same store), bad files are skipped and reported (``skipped.json``, ``summary.json``) unless ``--strict``, and
the store is written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import datasets
import numpy as np
from PIL import Image
from tqdm import tqdm

from training.atomic import atomic_folder
from training.lesion_filter import filter_lesion_frames
from training.lesion_masks import mask_column
from usvcl_hf.video import IMAGE_SUFFIXES, SUPPORTED_SUFFIXES, ClipReadError, read_clip

DEFAULT_FRAME_STRIDE = 5
DEFAULT_STORED_SIZE = 256
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
STORE_MARKER = "summary.json"


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


@dataclass
class DecodeOptions:
    """How each file is decoded and stored."""

    frame_stride: int = DEFAULT_FRAME_STRIDE
    max_frames: int | None = None
    dedup_threshold: float | None = None
    crop: bool = False
    stored_size: int | None = DEFAULT_STORED_SIZE
    max_pixels: int | None = None


@dataclass
class DecodeResult:
    """Encoded frames of one file, or the reason it was skipped."""

    png_frames: list[bytes] = field(default_factory=list)
    frame_indices: list[int] = field(default_factory=list)
    error: str | None = None


def resize_shorter_side(frame: np.ndarray, stored_size: int | None) -> np.ndarray:
    """Resize (H, W) uint8 so its shorter side is ``stored_size`` (aspect kept); only ever downscales."""
    height, width = frame.shape
    if stored_size is None or min(height, width) <= stored_size:
        return frame
    scale = stored_size / min(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(frame).resize(new_size, Image.Resampling.LANCZOS))


def encode_png(frame: np.ndarray) -> bytes:
    """(H, W) uint8 -> greyscale PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(frame, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_file(path: Path, options: DecodeOptions) -> DecodeResult:
    """Read one file into stored-size PNG frames (runs in a worker process)."""
    try:
        clip = read_clip(
            path,
            frame_stride=options.frame_stride,
            max_frames=options.max_frames,
            dedup_threshold=options.dedup_threshold,
            crop=options.crop,
            max_pixels=options.max_pixels,
        )
    except ClipReadError as error:
        return DecodeResult(error=error.reason)
    frames = [encode_png(resize_shorter_side(frame, options.stored_size)) for frame in clip.frames]
    return DecodeResult(png_frames=frames, frame_indices=[int(index) for index in clip.frame_indices])


def decode_all(jobs: list[FileJob], options: DecodeOptions, workers: int) -> Iterator[tuple[FileJob, DecodeResult]]:
    """Decode jobs in parallel, yielding results in job order with a progress bar."""
    decode = partial(decode_file, options=options)
    paths = [job.path for job in jobs]
    if workers <= 1:
        results = map(decode, paths)
        yield from zip(jobs, tqdm(results, total=len(jobs), desc="decoding", unit="file"), strict=True)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(decode, paths, chunksize=1)
        yield from zip(jobs, tqdm(results, total=len(jobs), desc="decoding", unit="file"), strict=True)


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


def video_rows(results: Iterator[tuple[FileJob, DecodeResult]], strict: bool, skipped: list[dict]) -> dict:
    """Columns of the video store from decode results (skips recorded in ``skipped``)."""
    columns: dict[str, list] = {"image": [], "video_id": [], "patient_id": [], "frame_index": [], "source": []}
    for job, result in results:
        if result.error is not None:
            record_skip(job, result.error, strict, skipped)
            continue
        for png, frame_index in zip(result.png_frames, result.frame_indices, strict=True):
            columns["image"].append({"bytes": png, "path": None})
            columns["video_id"].append(job.video_id)
            columns["patient_id"].append(job.patient_id)
            columns["frame_index"].append(frame_index)
            columns["source"].append(job.source)
    return columns


def record_skip(job: FileJob, reason: str, strict: bool, skipped: list[dict]) -> None:
    """Add a skipped file to the report, or stop when ``--strict``."""
    if strict:
        raise PrepareError(f"{job.path}: {reason} (--strict)")
    skipped.append({"source": job.source, "reason": reason})


VIDEO_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "video_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "frame_index": datasets.Value("int32"),
        "source": datasets.Value("string"),
    }
)


def is_bus_bra(root: Path) -> bool:
    """True when ``root`` looks like the BUS-BRA release (bus_data.csv next to Images/)."""
    return (root / BUS_BRA_METADATA).is_file() and (root / BUS_BRA_IMAGES).is_dir()


def apply_bus_bra_preset(args: argparse.Namespace, root: Path) -> None:
    """Fill in BUS-BRA's metadata, folds and column names unless given explicitly."""
    args.metadata = args.metadata or str(root / BUS_BRA_METADATA)
    args.folds = args.folds or str(root / BUS_BRA_FOLDS)
    args.file_column, args.patient_column, args.label_column = "ID", "Case", "Pathology"
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
    require_columns(csv_path, rows, [args.file_column, args.patient_column, args.label_column])
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
                            if Path(entry).suffix.lower() in IMAGE_SUFFIXES else entry))
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


def image_rows(results: Iterator[tuple[FileJob, DecodeResult]], args: argparse.Namespace,
               skipped: list[dict]) -> tuple[dict, list[str]]:
    """Columns of the image store and its fold keys."""
    test_fold, splits, fold_keys = read_folds(args)
    columns: dict[str, list] = {name: [] for name in
                                ("image", "image_id", "patient_id", "video_id", "frame_index", "source", "label",
                                 "fold", *[f"split_{key}" for key in fold_keys])}
    frames_per_patient: dict[str, int] = {}
    for job, result in results:
        if result.error is not None:
            record_skip(job, result.error, args.strict, skipped)
            continue
        columns["image"].append({"bytes": result.png_frames[0], "path": None})
        columns["image_id"].append(job.image_id)
        columns["patient_id"].append(job.patient_id)
        columns["video_id"].append(job.video_id)
        columns["frame_index"].append(frames_per_patient.get(job.patient_id, 0))
        frames_per_patient[job.patient_id] = columns["frame_index"][-1] + 1
        columns["source"].append(job.source)
        columns["label"].append(job.label)
        columns["fold"].append(test_fold.get(job.image_id, NO_FOLD))
        for key in fold_keys:
            columns[f"split_{key}"].append(splits.get(job.image_id, {}).get(key, TEST_SPLIT))
    return columns, fold_keys


def image_features(label_names: list[str], fold_keys: list[str]) -> datasets.Features:
    """Features of the image store."""
    features = {
        "image": datasets.Image(),
        "image_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "video_id": datasets.Value("string"),
        "frame_index": datasets.Value("int32"),
        "source": datasets.Value("string"),
        "label": datasets.ClassLabel(names=label_names),
        "fold": datasets.Value("int32"),
    }
    features.update({f"split_{key}": datasets.Value("string") for key in fold_keys})
    return datasets.Features(features)


def write_store_atomically(store: datasets.Dataset, output: Path, reports: dict[str, object]) -> None:
    """Save the store and its JSON reports to a temporary folder next to ``output``, then rename it there."""
    output = output.resolve()
    if output.exists() and any(output.iterdir()) and not (output / STORE_MARKER).is_file():
        raise PrepareError(f"{output} exists and is not a store made by this tool; refusing to replace it")
    with atomic_folder(output) as staging:
        store.save_to_disk(str(staging))
        for name, content in reports.items():
            (staging / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def finish(store: datasets.Dataset, args: argparse.Namespace, read_count: int, skipped: list[dict],
           id_source: str, started: float, lesion_report: dict | None = None) -> dict:
    """Write the store and reports (and the lesion filter's, `lesion_frames.json`), print the summary, return it."""
    if len(store) == 0:
        reasons = "; ".join(f"{item['source']}: {item['reason']}" for item in skipped)
        raise PrepareError(f"no readable file in {args.input} ({len(skipped)} skipped: {reasons})")
    summary = {
        "mode": args.mode,
        "input": str(args.input),
        "files_read": read_count,
        "files_skipped": len(skipped),
        "frames_kept": len(store),
        "videos": len(set(store["video_id"])),
        "patients": len(set(store["patient_id"])),
        "patient_id_source": id_source,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    reports = {"summary.json": summary, "skipped.json": skipped}
    if lesion_report is not None:
        summary["lesion_filter"] = {key: value for key, value in lesion_report.items() if key != "clips"}
        reports["lesion_frames.json"] = lesion_report
    write_store_atomically(store, Path(args.output), reports)
    print_summary(summary, skipped, Path(args.output))
    return summary


def print_summary(summary: dict, skipped: list[dict], output: Path) -> None:
    """Human-readable end-of-run report."""
    print(f"patient ids: {summary['patient_id_source']}")
    print(f"files read: {summary['files_read']}, frames kept: {summary['frames_kept']}, "
          f"videos: {summary['videos']}, patients: {summary['patients']}, skipped: {summary['files_skipped']}")
    for item in skipped:
        print(f"  skipped {item['source']}: {item['reason']}")
    print(f"store written to {output.resolve()} ({summary['wall_time_s']} s)")


def run_videos(args: argparse.Namespace) -> dict:
    """The ``videos`` sub-command."""
    started = time.perf_counter()
    root = existing_input(args.input)
    jobs, skipped, id_source = build_video_jobs(args, root)
    print(f"patient ids from: {id_source}")
    ensure_jobs(jobs, skipped, root)
    options = DecodeOptions(args.frame_stride, args.max_frames, args.dedup_threshold, args.crop, args.stored_size,
                            args.max_pixels)
    decode_skips_before = len(skipped)
    columns = video_rows(decode_all(jobs, options, args.workers), args.strict, skipped)
    read_count = len(jobs) - (len(skipped) - decode_skips_before)
    lesion_report = None
    if args.lesion_model:  # keep lesion frames only (the paper's pipeline), report kept / dropped per clip
        try:
            columns, lesion_report = filter_lesion_frames(columns, args.lesion_model, args.lesion_threshold)
        except (OSError, ValueError) as error:
            raise PrepareError(f"--lesion-model {args.lesion_model}: {error}") from error
        print(f"lesion filter: kept {lesion_report['frames_kept']} frames, dropped {lesion_report['frames_dropped']} "
              f"(P(lesion) >= {lesion_report['lesion_threshold']:.3f}; per clip in lesion_frames.json)")
        if not lesion_report["frames_kept"]:
            raise PrepareError(f"the lesion model {args.lesion_model} found no lesion frame in {args.input}")
    store = datasets.Dataset.from_dict(columns, features=VIDEO_FEATURES)
    return finish(store, args, read_count, skipped, id_source, started, lesion_report)


def run_images(args: argparse.Namespace) -> dict:
    """The ``images`` sub-command."""
    started = time.perf_counter()
    root = existing_input(args.input)
    if args.preset == BUS_BRA_PRESET or (args.preset is None and not args.metadata and is_bus_bra(root)):
        apply_bus_bra_preset(args, root)
        print(f"BUS-BRA layout: metadata {args.metadata}, folds {args.folds}")
    jobs, skipped, id_source = build_image_jobs(args, root)
    print(f"patient ids from: {id_source}")
    ensure_jobs(jobs, skipped, root)
    options = DecodeOptions(frame_stride=1, max_frames=1, stored_size=args.stored_size, max_pixels=args.max_pixels)
    decode_skips_before = len(skipped)
    columns, fold_keys = image_rows(decode_all(jobs, options, args.workers), args, skipped)
    read_count = len(jobs) - (len(skipped) - decode_skips_before)
    label_names = args.label_names or sorted(set(columns["label"]))
    unknown = sorted(set(columns["label"]) - set(label_names))
    if unknown:
        raise PrepareError(f"labels {unknown} are not among the label names {label_names}")
    features = image_features(label_names, fold_keys)
    if args.masks:  # lesion masks at the stored size (training.train_lesion); None where an image has none
        columns["mask"] = mask_column(Path(args.masks), columns["image_id"], columns["image"])
        features["mask"] = datasets.Image()
    store = datasets.Dataset.from_dict(columns, features=features)
    return finish(store, args, read_count, skipped, id_source, started)


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


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m training.prepare_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="mode", required=True)
    videos = commands.add_parser("videos", help="clips (mp4/avi/mov/mkv/webm/mpeg, DICOM) -> one row per frame")
    images = commands.add_parser("images", help="labelled images (class folders, metadata CSV, BUS-BRA)")
    for sub in (videos, images):
        sub.add_argument("--input", required=True, help="folder to read (searched recursively)")
        sub.add_argument("--output", required=True, help="store folder to write (replaced atomically)")
        sub.add_argument("--stored-size", type=int, default=DEFAULT_STORED_SIZE,
                         help="shorter side of stored frames in px (only downscaled)")
        sub.add_argument("--max-pixels", type=int, default=None, help="skip files with larger frames")
        sub.add_argument("--patient-regex", help="patient id = first group of this regex on the relative path")
        sub.add_argument("--metadata", help="CSV with a file column and a patient column (and a label column)")
        sub.add_argument("--file-column", default="file", help="metadata column naming the file")
        sub.add_argument("--patient-column", default="patient_id", help="metadata column with the patient id")
        sub.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
        sub.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    videos.add_argument("--frame-stride", type=int, default=DEFAULT_FRAME_STRIDE, help="keep every k-th frame")
    videos.add_argument("--dedup-threshold", type=float, default=None,
                        help="drop frames at least this similar (1 - mean|diff|/255) to the last kept one")
    videos.add_argument("--max-frames", type=int, default=None, help="at most this many frames per clip")
    videos.add_argument("--crop", action="store_true", help="crop to the automatically detected imaging region")
    videos.add_argument("--lesion-model", default=None,
                        help="lesion segmenter folder or Hub id: keep only frames it finds a lesion in")
    videos.add_argument("--lesion-threshold", type=float, default=None,
                        help="lesion probability to keep a frame (default: the lesion model's lesion_threshold)")
    images.add_argument("--preset", choices=[BUS_BRA_PRESET], default=None,
                        help="dataset layout (BUS-BRA is also detected automatically)")
    images.add_argument("--label-column", default="label", help="metadata column with the class label")
    images.add_argument("--masks", default=None,
                        help="folder of BUS-BRA-style lesion masks (mask_<id without bus_>.png): adds a `mask` column "
                             "(BUS-BRA's Masks/ is found automatically)")
    images.add_argument("--file-template", default="{}", help="path of a metadata file entry, {} = the entry")
    images.add_argument("--folds", help="CSV with the test fold and valid_k columns per image id")
    images.add_argument("--fold-id-column", default="ID", help="folds CSV column with the image id")
    images.add_argument("--fold-column", default="kFold", help="folds CSV column with the test fold")
    images.set_defaults(label_names=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (errors are printed, not raised)."""
    args = build_parser().parse_args(argv)
    if args.patient_regex and args.metadata and args.mode == "videos":
        print("error: give either --patient-regex or --metadata, not both", file=sys.stderr)
        return 2
    try:
        run_videos(args) if args.mode == "videos" else run_images(args)
    except PrepareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
