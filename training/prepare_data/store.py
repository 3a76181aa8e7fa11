"""Rows, features and the store on disk (written atomically with its summary and skip report)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import datasets

from training.atomic import atomic_folder
from training.prepare_data.decode import DecodeResult
from training.prepare_data.sources import NO_FOLD, TEST_SPLIT, FileJob, PrepareError, read_folds

LOGGER = logging.getLogger(__name__)
STORE_MARKER = "summary.json"


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


def image_rows(results: Iterator[tuple[FileJob, DecodeResult]], args: argparse.Namespace,
               skipped: list[dict]) -> tuple[dict, list[str]]:
    """Columns of the image store and its fold keys."""
    test_fold, splits, fold_keys = read_folds(args)
    columns: dict[str, list] = {name: [] for name in
                                ("image", "image_id", "patient_id", "video_id", "frame_index", "source", "label",
                                 "fold", *[f"split_{key}" for key in fold_keys],
                                 *(["device"] if getattr(args, "device_column", None) else []))}
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
        if "device" in columns:
            columns["device"].append(job.device)
    return columns, fold_keys


def image_features(label_names: list[str], fold_keys: list[str], with_device: bool = False) -> datasets.Features:
    """Features of the image store (a `device` column with `with_device`: the scanner of each image)."""
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
    if with_device:
        features["device"] = datasets.Value("string")
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
    """Write the store and reports (and the lesion filter's, `lesion_frames.json`), log the summary, return it."""
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
    log_summary(summary, skipped, Path(args.output))
    return summary


def log_summary(summary: dict, skipped: list[dict], output: Path) -> None:
    """Human-readable end-of-run report."""
    LOGGER.info("patient ids: %s", summary["patient_id_source"])
    LOGGER.info("files read: %d, frames kept: %d, videos: %d, patients: %d, skipped: %d", summary["files_read"],
                summary["frames_kept"], summary["videos"], summary["patients"], summary["files_skipped"])
    for item in skipped:
        LOGGER.warning("skipped %s: %s", item["source"], item["reason"])
    LOGGER.info("store written to %s (%s s)", output.resolve(), summary["wall_time_s"])

