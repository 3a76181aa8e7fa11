"""Export a trained lesion segmenter (`training.lesion.train`) as a Hub-ready folder: half-precision weights that
load as float32, the Hub code, the image processor, `results.json`, `export_check.json` and a model card rendered
from `lesion_card.md` with the run's numbers. `python -m training.export --kind lesion`:

    python -m training.export --kind lesion --model-dir runs/lesion/final_model --results runs/lesion/results.json \
        --output models/usvcl-lesion-busbra
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import timm
import torch
import transformers
from huggingface_hub import ModelCardData

from training.atomic import atomic_folder
from training.export.base import (
    BYTES_PER_MB,
    CHECK_FILE,
    PAPER_ARXIV,
    RESULTS_COPY,
    WEIGHTS_FILE,
    ExportError,
    read_json,
)
from training.export.cards import REPO_ROOT, render_card
from training.export.checks import (
    CHECK_ATOL,
    check_image,
    check_input,
    describe_inputs,
    keep_recorded_outputs,
    previous_check,
    record_export_inputs,
)
from training.export.folders import finish_folder
from training.export.licences import choose_license, dataset_entries
from training.export.weights import DEFAULT_EXPORT_DTYPE, EXPORT_DTYPES, MAX_WEIGHTS_MB, save_model
from usvcl_hf import LesionSegmentationModel, UsvclImageProcessor

LESION_CARD_TEMPLATE = REPO_ROOT / "lesion_card.md"
POOLED_SIDE = 8  # the check records the mask logits average-pooled to POOLED_SIDE x POOLED_SIDE (a small JSON)
SEGMENTATION_METRICS = ("dice", "iou")
PRESENCE_METRICS = ("auc", "sensitivity", "specificity")


def check_lesion_results(results: dict[str, Any], path: Path) -> None:
    """The parts of a `training.lesion.train` results.json the card uses; an `ExportError` naming what is missing."""
    missing = [key for key in ("folds", "pooled", "final_model", "commit", "machine") if key not in results]
    if missing or not results["folds"]:
        raise ExportError(f"{path} lacks {missing or ['folds']}: is it a results.json of training/lesion/train.py?")
    for name in SEGMENTATION_METRICS:
        if not {"value", "ci_low", "ci_high"} <= set(results["pooled"]["metrics"].get(name, {})):
            raise ExportError(f"{path}: pooled.metrics.{name} must hold value, ci_low and ci_high.")
    if not isinstance(results["final_model"].get("lesion_threshold"), (int, float)):
        raise ExportError(f"{path}: final_model.lesion_threshold must be a number (was the final model trained?).")


def lesion_outputs(model: LesionSegmentationModel, pixel_values: torch.Tensor) -> dict[str, list]:
    """Presence probability, presence logit and the mask logits average-pooled to `(1, 1, 8, 8)` (float32, eval)."""
    with torch.no_grad():
        output = model(pixel_values)
    pooled = torch.nn.functional.adaptive_avg_pool2d(output.logits, POOLED_SIDE)  # (1, 1, S, S) -> (1, 1, 8, 8)
    return {"lesion_probability": output.lesion_probability.tolist(),
            "presence_logits": output.presence_logits.tolist(), "logits_pooled": pooled.tolist()}


def write_lesion_check(folder: Path, processor: UsvclImageProcessor, dtype: str) -> LesionSegmentationModel:
    """Load the exported folder back (it must load as float32) and record its outputs on the seeded inputs."""
    reloaded = LesionSegmentationModel.from_pretrained(folder).eval()
    if next(reloaded.parameters()).dtype != torch.float32:
        raise ExportError("The exported lesion model does not load as float32: check config.json `dtype`.")
    pixel_values = torch.from_numpy(check_input(reloaded.config))
    image_pixels = processor(check_image(), return_tensors="pt")["pixel_values"]
    record = {
        "kind": "lesion", "model_class": type(reloaded).__name__, "weights_dtype": dtype, "loaded_dtype": "float32",
        "atol": CHECK_ATOL, "inputs": describe_inputs(check_input(reloaded.config)),
        "outputs": {"pixel_values": lesion_outputs(reloaded, pixel_values),
                    "image": lesion_outputs(reloaded, image_pixels)},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "timm": timm.__version__},
    }
    (folder / CHECK_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return reloaded


def metric_cell(metric: dict[str, float]) -> str:
    """`0.812 [0.801, 0.823]`."""
    return f"{metric['value']:.3f} [{metric['ci_low']:.3f}, {metric['ci_high']:.3f}]"


def lesion_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """Card table rows: each fold, then pooled."""
    rows = []
    for entry in [*results["folds"], {"fold": "pooled", **results["pooled"]}]:
        metrics = entry["metrics"]
        rows.append({"fold": str(entry["fold"]), "n": str(entry.get("n_test", results.get("n_test", ""))),
                     **{name: metric_cell(metrics[name]) for name in SEGMENTATION_METRICS},
                     **{f"presence_{name}": metric_cell(metrics["presence"][name]) for name in PRESENCE_METRICS},
                     "score": entry.get("presence_score", "per fold"),
                     "threshold": f"{entry['lesion_threshold']:.3f}" if "lesion_threshold" in entry else "per fold"})
    return rows


def lesion_card(results: dict[str, Any], model: LesionSegmentationModel, model_name: str, dtype: str,
                size_mb: float, license_id: str, license_note: str) -> str:
    """README.md of the lesion model from `lesion_card.md`."""
    card_data = ModelCardData(model_name=model_name, license=license_id, library_name="transformers",
                              pipeline_tag="image-segmentation", datasets=["BUS-BRA"],
                              tags=["medical-imaging", "ultrasound", "breast", "segmentation", "timm", "usvcl",
                                    "custom_code"])
    pooled = results["pooled"]["metrics"]
    return render_card(
        LESION_CARD_TEMPLATE, card_data, model_name=model_name, paper_arxiv=PAPER_ARXIV, config=model.config,
        license_id=license_id, license_note=license_note, datasets=dataset_entries(["bus_bra"], "training"),
        rows=lesion_rows(results), pooled_dice=metric_cell(pooled["dice"]), pooled_iou=metric_cell(pooled["iou"]),
        presence_auc=metric_cell(pooled["presence"]["auc"]),
        auc_by_score={name: metric_cell(value) for name, value in pooled["presence_auc_by_score"].items()},
        final=results["final_model"], run=results, train_config=results["config"], weights_dtype=dtype,
        size_mb=f"{size_mb:.1f}", n_folds=len(results["folds"]),
    )


def rerender_lesion_card(folder: Path, repo_id: str | None = None, license_id: str | None = None) -> Path:
    """Write README.md of an exported lesion folder again from its results.json and config (weights untouched)."""
    for name in (WEIGHTS_FILE, CHECK_FILE, "config.json", RESULTS_COPY):
        if not (folder / name).is_file():
            raise ExportError(f"{folder}: not an exported lesion folder ({name} is missing)")
    results = read_json(folder / RESULTS_COPY)
    check_lesion_results(results, folder / RESULTS_COPY)
    config = LesionSegmentationModel.config_class.from_pretrained(folder)
    license_default, license_note = choose_license(["bus_bra"])
    size_mb = (folder / WEIGHTS_FILE).stat().st_size / BYTES_PER_MB
    card = lesion_card(results, SimpleNamespace(config=config), repo_id or folder.name,
                       read_json(folder / CHECK_FILE)["weights_dtype"], size_mb, license_id or license_default,
                       license_note)
    (folder / "README.md").write_text(card)
    record_export_inputs(folder, {"repo_id": repo_id or folder.name, "license_id": license_id})
    return folder


def export_lesion(model_dir: Path, results_path: Path, output: Path, dtype: str = DEFAULT_EXPORT_DTYPE,
                  max_mb: float = MAX_WEIGHTS_MB, license_id: str | None = None, repo_id: str | None = None) -> Path:
    """Write the Hub-ready lesion-model folder at `output` (atomically) and return it."""
    results = read_json(results_path)
    check_lesion_results(results, results_path)
    model = LesionSegmentationModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    model.config.lesion_threshold = float(np.clip(results["final_model"]["lesion_threshold"], 0.0, 1.0))
    model.config.presence_score = results["final_model"]["presence_score"]
    processor = UsvclImageProcessor.from_pretrained(model_dir)
    license_default, license_note = choose_license(["bus_bra"])
    with atomic_folder(output) as staging:
        size_mb = save_model(model, staging, EXPORT_DTYPES[dtype], max_mb)
        processor.save_pretrained(staging)
        write_lesion_check(staging, processor, dtype)
        shutil.copyfile(results_path, staging / RESULTS_COPY)
        (staging / "README.md").write_text(lesion_card(results, model, repo_id or output.name, dtype, size_mb,
                                                       license_id or license_default, license_note))
        record_export_inputs(staging, {"repo_id": repo_id or output.name, "license_id": license_id})
        keep_recorded_outputs(staging, previous_check(output))
        finish_folder(staging)
    return output


__all__ = ["export_lesion", "lesion_card", "rerender_lesion_card", "write_lesion_check"]
