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
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import datasets

from training.cli_inputs import require_inputs
from training.lesion.filter import filter_lesion_frames
from training.lesion.masks import mask_column
from training.logs import setup_logging
from training.prepare_data.decode import DEFAULT_FRAME_STRIDE, DEFAULT_STORED_SIZE, DecodeOptions, decode_all
from training.prepare_data.sources import (
    BUS_BRA_PRESET,
    PrepareError,
    apply_bus_bra_preset,
    build_image_jobs,
    build_video_jobs,
    ensure_jobs,
    existing_input,
    is_bus_bra,
)
from training.prepare_data.store import VIDEO_FEATURES, finish, image_features, image_rows, video_rows

LOGGER = logging.getLogger(__name__)


def run_videos(args: argparse.Namespace) -> dict:
    """The ``videos`` sub-command."""
    started = time.perf_counter()
    root = existing_input(args.input)
    jobs, skipped, id_source = build_video_jobs(args, root)
    LOGGER.info("patient ids from: %s", id_source)
    ensure_jobs(jobs, skipped, root)
    options = DecodeOptions(args.frame_stride, args.max_frames, args.dedup_threshold, args.crop, args.stored_size,
                            args.max_pixels)
    decode_skips_before = len(skipped)
    columns = video_rows(decode_all(jobs, options, args.workers), args.strict, skipped)
    read_count = len(jobs) - (len(skipped) - decode_skips_before)
    columns, lesion_report = keep_lesion_frames(args, columns)
    store = datasets.Dataset.from_dict(columns, features=VIDEO_FEATURES)
    return finish(store, args, read_count, skipped, id_source, started, lesion_report)


def keep_lesion_frames(args: argparse.Namespace, columns: dict) -> tuple[dict, dict | None]:
    """With `--lesion-model`, keep lesion frames only (the paper's pipeline) and report kept / dropped per clip."""
    if not args.lesion_model:
        return columns, None
    try:
        columns, lesion_report = filter_lesion_frames(columns, args.lesion_model, args.lesion_threshold)
    except (OSError, ValueError) as error:
        raise PrepareError(f"--lesion-model {args.lesion_model}: {error}") from error
    LOGGER.info("lesion filter: kept %d frames, dropped %d (P(lesion) >= %.3f; per clip in lesion_frames.json)",
                lesion_report["frames_kept"], lesion_report["frames_dropped"], lesion_report["lesion_threshold"])
    if not lesion_report["frames_kept"]:
        raise PrepareError(f"the lesion model {args.lesion_model} found no lesion frame in {args.input}")
    return columns, lesion_report


def run_images(args: argparse.Namespace) -> dict:
    """The ``images`` sub-command."""
    started = time.perf_counter()
    root = existing_input(args.input)
    if args.preset == BUS_BRA_PRESET or (args.preset is None and not args.metadata and is_bus_bra(root)):
        apply_bus_bra_preset(args, root)
        LOGGER.info("BUS-BRA layout: metadata %s, folds %s", args.metadata, args.folds)
    jobs, skipped, id_source = build_image_jobs(args, root)
    LOGGER.info("patient ids from: %s", id_source)
    ensure_jobs(jobs, skipped, root)
    options = DecodeOptions(frame_stride=1, max_frames=1, stored_size=args.stored_size, max_pixels=args.max_pixels)
    decode_skips_before = len(skipped)
    columns, fold_keys = image_rows(decode_all(jobs, options, args.workers), args, skipped)
    read_count = len(jobs) - (len(skipped) - decode_skips_before)
    label_names = args.label_names or sorted(set(columns["label"]))
    unknown = sorted(set(columns["label"]) - set(label_names))
    if unknown:
        raise PrepareError(f"labels {unknown} are not among the label names {label_names}")
    features = image_features(label_names, fold_keys, with_device="device" in columns)
    if args.masks:  # lesion masks at the stored size (training.lesion.train); None where an image has none
        columns["mask"] = mask_column(Path(args.masks), columns["image_id"], columns["image"])
        features["mask"] = datasets.Image()
    store = datasets.Dataset.from_dict(columns, features=features)
    return finish(store, args, read_count, skipped, id_source, started)


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
    images.add_argument("--device-column", default=None,
                        help="metadata column naming each image's scanner: adds a `device` column (cross-device "
                             "splits; BUS-BRA's `Device` is read automatically)")
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
    require_inputs("python -m training.prepare_data", {
        "--input": args.input, "--metadata": args.metadata,
        "--masks": getattr(args, "masks", None), "--folds": getattr(args, "folds", None)})
    setup_logging()
    if args.patient_regex and args.metadata and args.mode == "videos":
        LOGGER.error("give either --patient-regex or --metadata, not both")
        return 2
    try:
        run_videos(args) if args.mode == "videos" else run_images(args)
    except PrepareError as error:
        LOGGER.error("%s", error)
        return 1
    return 0

