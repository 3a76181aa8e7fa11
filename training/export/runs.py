"""Reading what the export starts from: a fine-tuning run's results.json, its pretraining folder and data."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from training.export.base import ExportError, read_json
from training.export.licences import DATASETS, detect_datasets
from usvcl_hf import UsvclConfig, UsvclImageProcessor

LOGGER = logging.getLogger(__name__)
METRICS = ("auc", "sensitivity", "specificity", "accuracy")

ECE_METRICS = ("ece_before", "ece_after")

NON_PRETRAINED_INITS = ("random", "scratch", "none", "imagenet", "timm")

PRETRAIN_SUMMARY_FILES = ("pretrain_config.json", "results.json", "summary.json")  # first found is used

PRETRAIN_HISTORY_FILE = "history.json"  # training.pretrain's monitor records, one per monitored step


def check_results(results: dict[str, Any], path: Path) -> None:
    """Check the parts of a `results.json` (CONTRACT.md schema) that the card uses; raise an `ExportError` if not."""
    missing = [key for key in ("folds", "pooled", "mean_std", "final_model") if key not in results]
    if missing:
        raise ExportError(f"{path} lacks {missing}: is it a results.json written by training/finetune.py?")
    for name in (*METRICS, *ECE_METRICS):
        metric = results["pooled"].get(name)
        if not isinstance(metric, dict) or not {"value", "ci_low", "ci_high"} <= metric.keys():
            raise ExportError(f"{path}: pooled.{name} must be {{'value', 'ci_low', 'ci_high'}}, got {metric!r}.")
    for key in ("threshold", "temperature"):
        if not isinstance(results["final_model"].get(key), (int, float)):
            raise ExportError(f"{path}: final_model.{key} must be a number.")
    if not results["folds"]:
        raise ExportError(f"{path}: `folds` is empty.")


def load_processor(model_dir: Path, config: UsvclConfig) -> UsvclImageProcessor:
    """The folder's image processor, or one built from the model config when the folder has none."""
    if (model_dir / "preprocessor_config.json").is_file():
        return UsvclImageProcessor.from_pretrained(model_dir)
    LOGGER.warning("%s has no preprocessor_config.json; building the processor from config.json", model_dir)
    return UsvclImageProcessor(image_size=config.image_size, in_chans=config.in_chans, resize_mode=config.resize_mode)


def find_pretrain_summary(pretrain_dir: Path | None) -> dict[str, Any]:
    """The pretraining configuration of a pretraining output (`pretrain_config.json`, ...), or `{}`."""
    if pretrain_dir is None:
        return {}
    for name in PRETRAIN_SUMMARY_FILES:
        if (pretrain_dir / name).is_file():
            summary = read_json(pretrain_dir / name)
            return summary["config"] if isinstance(summary.get("config"), dict) else summary
    return {}


def pretrain_steps_run(pretrain_dir: Path | None) -> int | None:
    """The last step a pretraining run recorded in its history (a wall-clock limit may end it early), or None."""
    if pretrain_dir is None or not (pretrain_dir / PRETRAIN_HISTORY_FILE).is_file():
        return None
    history = read_json(pretrain_dir / PRETRAIN_HISTORY_FILE, expected=list)
    steps = [entry["step"] for entry in history if isinstance(entry, dict) and "step" in entry]
    return max(steps) if steps else None


def read_finetune_run(
    results_path: Path, pretrain_dir: Path | None, pretrain_data: list[str] | None,
) -> tuple[dict[str, Any], Path | None, list[str] | None]:
    """A fine-tuning run's checked results.json, the pretraining folder it started from and that run's data keys."""
    results = read_json(results_path)
    check_results(results, results_path)
    pretrain_dir = pretrain_dir or (None if pretrain_data else infer_pretrain_dir(results))
    return results, pretrain_dir, resolve_pretrain_data(pretrain_data, pretrain_dir, results.get("init"))


def infer_pretrain_dir(results: dict[str, Any]) -> Path | None:
    """The pretraining output a fine-tuning run started from (`config.pretrained_path` or its parent), if local."""
    pretrained_path = (results.get("config") or {}).get("pretrained_path")
    if not pretrained_path or str(results.get("init", "")).lower() in NON_PRETRAINED_INITS:
        return None
    path = Path(pretrained_path)
    for candidate in (path.parent, path):
        if any((candidate / name).is_file() for name in PRETRAIN_SUMMARY_FILES):
            return candidate
    return None


def resolve_pretrain_data(
    explicit: list[str] | None, pretrain_dir: Path | None, init: str | None
) -> list[str] | None:
    """Which data sets pretraining used: `--pretrain-data`, else found in the pretraining summary, else `None`.

    `None` means no contrastive pretraining (ImageNet or random init). Raises an `ExportError` when the model was
    pretrained but the data cannot be told: the licence of the weights depends on it.
    """
    if explicit is not None:
        unknown = sorted(set(explicit) - DATASETS.keys())
        if unknown:
            raise ExportError(f"--pretrain-data: unknown data sets {unknown}; known: {sorted(DATASETS)}.")
        return [key for key in DATASETS if key in explicit]
    if pretrain_dir is not None:
        summary = find_pretrain_summary(pretrain_dir)
        trained_on = summary.get("store_paths", summary)  # the monitor store is only evaluated, never trained on
        found = detect_datasets(json.dumps(trained_on))
        if found:
            return found
        raise ExportError(
            f"Cannot tell from {pretrain_dir} which data pretraining used (no {list(PRETRAIN_SUMMARY_FILES)} naming "
            f"{sorted(DATASETS)}). Pass --pretrain-data, e.g. --pretrain-data covid_blues pocus."
        )
    if init is None or str(init).lower() in NON_PRETRAINED_INITS:
        return None
    raise ExportError(
        f"results.json says the model was initialised from {init!r} (contrastive pretraining?) but neither "
        "--pretrain-dir nor --pretrain-data was given: the card must name the pretraining data and its licence."
    )


__all__ = ["check_results", "find_pretrain_summary", "infer_pretrain_dir", "load_processor", "pretrain_steps_run",
           "read_finetune_run", "resolve_pretrain_data"]
