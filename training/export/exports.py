"""The three exports: a classifier folder, a backbone folder, and a classifier's card written again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from training.atomic import atomic_folder
from training.export.base import BYTES_PER_MB, CHECK_FILE, RESULTS_COPY, WEIGHTS_FILE, ExportError, read_json
from training.export.cards import backbone_card, classifier_card
from training.export.checks import keep_recorded_outputs, previous_check, record_export_inputs, write_check
from training.export.folders import CLASSIFIER_FIGURES, LABEL_EFFICIENCY_FILE, copy_figures, finish_folder
from training.export.licences import choose_license
from training.export.runs import (
    find_pretrain_summary,
    load_processor,
    pretrain_steps_run,
    read_finetune_run,
    resolve_pretrain_data,
)
from training.export.weights import DEFAULT_EXPORT_DTYPE, EXPORT_DTYPES, MAX_WEIGHTS_MB, save_model, save_timm_backbone
from usvcl_hf import UsvclConfig, UsvclForContrastivePretraining, UsvclForImageClassification
from usvcl_hf.pipeline_usvcl import IMPLEMENTATION as TWO_VIEW_IMPLEMENTATION
from usvcl_hf.pipeline_usvcl import TASK as TWO_VIEW_TASK


def set_decision_rule(config: UsvclConfig, temperature: float, threshold: float, bias: float = 0.0) -> None:
    """The calibration (temperature, bias) and the decision threshold, folded into the logits
    (`threshold_in_logits`) so that `argmax(logits)` is the calibrated decision at every door (pipeline,
    `predict_clip`, demo)."""
    config.calibration_temperature = float(temperature)
    config.calibration_bias = float(bias)
    config.decision_threshold = float(threshold)
    config.threshold_in_logits = True
    config.validate_usvcl()


def set_two_views(config: UsvclConfig, lesion_model: str, crop_model: str) -> None:
    """Name the two-view companions (Hub ids) and the `usvcl-two-views` pipeline that loads them
    (`usvcl_hf/pipeline_usvcl.py`), so that `pipeline(model=folder, trust_remote_code=True)` answers with two views."""
    config.two_view_models = {"lesion_model": lesion_model, "crop_model": crop_model}
    config.custom_pipelines = {TWO_VIEW_TASK: dict(TWO_VIEW_IMPLEMENTATION)}
    config.validate_usvcl()


def export_classifier(
    model_dir: Path, results_path: Path, output: Path, pretrain_dir: Path | None = None,
    pretrain_data: list[str] | None = None, dtype: str = DEFAULT_EXPORT_DTYPE, max_mb: float = MAX_WEIGHTS_MB,
    license_id: str | None = None, code_url: str | None = None, repo_id: str | None = None,
    label_efficiency: Path | None = None,
) -> Path:
    """Write the Hub-ready classifier folder at `output` (atomically) and return it.

    `repo_id` (default: the folder name) is the name the card uses in its examples and model-index.
    `label_efficiency`: a label-efficiency plot from another run (e.g. `experiments/plot_label_efficiency.py`) to
    show in the card when the fine-tuning run itself made none.
    """
    results, pretrain_dir, pretrain_keys = read_finetune_run(results_path, pretrain_dir, pretrain_data)
    model = UsvclForImageClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    final = results["final_model"]
    set_decision_rule(model.config, final["temperature"], final["threshold"], final.get("calibration_bias", 0.0))
    processor = load_processor(model_dir, model.config)
    license_default, license_note = choose_license(["bus_bra", *(pretrain_keys or [])])
    with atomic_folder(output) as staging:
        size_mb = save_model(model, staging, EXPORT_DTYPES[dtype], max_mb)
        processor.save_pretrained(staging)
        write_check(staging, model, processor, "classifier", dtype)
        figures = copy_figures(results, results_path.parent, staging)
        if label_efficiency is not None:
            if not label_efficiency.is_file():
                raise ExportError(f"{label_efficiency}: no such label-efficiency plot")
            figures["label_efficiency"] = LABEL_EFFICIENCY_FILE
            shutil.copyfile(label_efficiency, staging / LABEL_EFFICIENCY_FILE)
        shutil.copyfile(results_path, staging / RESULTS_COPY)
        card = classifier_card(
            results, model.config, pretrain_keys, find_pretrain_summary(pretrain_dir), figures,
            license_id or license_default, license_note, repo_id or output.name, dtype, size_mb, code_url,
            pretrain_steps_run(pretrain_dir),
        )
        (staging / "README.md").write_text(card)
        record_export_inputs(staging, classifier_inputs(repo_id or output.name, pretrain_keys, license_id, code_url))
        keep_recorded_outputs(staging, previous_check(output))
        finish_folder(staging)
    return output


def classifier_inputs(repo_id: str, pretrain_data: list[str] | None, license_id: str | None,
                      code_url: str | None) -> dict[str, object]:
    """What a classifier's card needs besides its folder: recorded in `export_check.json` for a re-export."""
    return {"repo_id": repo_id, "pretrain_data": pretrain_data, "license_id": license_id, "code_url": code_url}


def rerender_classifier_card(
    folder: Path, results_path: Path, pretrain_dir: Path | None = None, pretrain_data: list[str] | None = None,
    license_id: str | None = None, code_url: str | None = None, repo_id: str | None = None,
) -> Path:
    """Write README.md (and results.json) of an exported classifier folder again; weights and check untouched.

    For a card whose template or wording changed after the export, when the float32 weights are gone (a run on a
    lent machine that sent back only the half-precision export): the folder's config, weights size, dtype
    (`export_check.json`) and figures are read from the folder itself.
    """
    for name in (WEIGHTS_FILE, CHECK_FILE, "config.json"):
        if not (folder / name).is_file():
            raise ExportError(f"{folder}: not an exported classifier folder ({name} is missing)")
    results, pretrain_dir, pretrain_keys = read_finetune_run(results_path, pretrain_dir, pretrain_data)
    config = UsvclConfig.from_pretrained(folder)
    license_default, license_note = choose_license(["bus_bra", *(pretrain_keys or [])])
    figures = {key: f"{key}.png" for key in CLASSIFIER_FIGURES if (folder / f"{key}.png").is_file()}
    size_mb = (folder / WEIGHTS_FILE).stat().st_size / BYTES_PER_MB
    card = classifier_card(
        results, config, pretrain_keys, find_pretrain_summary(pretrain_dir), figures,
        license_id or license_default, license_note, repo_id or folder.name,
        read_json(folder / CHECK_FILE)["weights_dtype"], size_mb, code_url, pretrain_steps_run(pretrain_dir),
    )
    if results_path.resolve() != (folder / RESULTS_COPY).resolve():
        shutil.copyfile(results_path, folder / RESULTS_COPY)
    (folder / "README.md").write_text(card)
    record_export_inputs(folder, classifier_inputs(repo_id or folder.name, pretrain_keys, license_id, code_url))
    finish_folder(folder)
    return folder


CLASSIFIER_ONLY_FIELDS = (
    "calibration_temperature", "calibration_bias", "decision_threshold", "threshold_in_logits", "ood_components",
    "ood_threshold", "lesion_crop_margin", "two_view_models", "custom_pipelines", "class_weights",
    "classifier_hidden_dim", "classifier_dropout", "clip_aggregation", "clip_top_k",
)  # what a classifier's config holds for its head, calibration, decision and companions: no part of an encoder


def encoder_config(config: UsvclConfig) -> UsvclConfig:
    """A copy of `config` without the classifier's fields (`CLASSIFIER_ONLY_FIELDS` back at their defaults), so
    that an encoder taken from a classifier carries no temperature, threshold or companions of that classifier."""
    defaults = UsvclConfig()
    values = config.to_dict()
    for name in CLASSIFIER_ONLY_FIELDS:
        values.pop(name, None)
    encoder = UsvclConfig.from_dict(values)
    for name in CLASSIFIER_ONLY_FIELDS:
        if hasattr(defaults, name):
            setattr(encoder, name, getattr(defaults, name))
        elif hasattr(encoder, name):
            delattr(encoder, name)
    encoder.validate_usvcl()
    return encoder


def drop_classifier_fields(folder: Path) -> None:
    """Remove `CLASSIFIER_ONLY_FIELDS` from a saved encoder's config.json (they load as their defaults)."""
    path = folder / "config.json"
    values = read_json(path)
    kept = {name: value for name, value in values.items() if name not in CLASSIFIER_ONLY_FIELDS}
    path.write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")


def classifier_init(folder: Path) -> str:
    """The `init` an exported classifier's results.json records ("contrastive pretraining" when it has none)."""
    results = folder / RESULTS_COPY
    return read_json(results).get("init", "contrastive pretraining") if results.is_file() else "contrastive pretraining"


def export_backbone(
    model_dir: Path, output: Path, pretrain_dir: Path | None = None, pretrain_data: list[str] | None = None,
    dtype: str = DEFAULT_EXPORT_DTYPE, max_mb: float = MAX_WEIGHTS_MB, license_id: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write the Hub-ready encoder folder (AutoModel + plain timm weights) at `output` (atomically).

    From an exported classifier folder the encoder's data are BUS-BRA (fine-tuning) plus what pretraining used; its
    results.json's `init` says whether there was pretraining (an ImageNet or random init needs no --pretrain-*)."""
    encoder = UsvclForContrastivePretraining.from_pretrained(model_dir, dtype=torch.float32).usvcl.eval()
    encoder.config = encoder_config(encoder.config)
    from_classifier = UsvclForImageClassification.__name__ in (encoder.config.architectures or [])
    init = classifier_init(model_dir) if from_classifier else "contrastive pretraining"
    pretrain_keys = resolve_pretrain_data(pretrain_data, pretrain_dir, init=init)
    data_keys = ["bus_bra", *(key for key in pretrain_keys or [] if key != "bus_bra")] if from_classifier else (
        pretrain_keys or [])
    processor = load_processor(model_dir, encoder.config)
    license_default, license_note = choose_license(data_keys)
    with atomic_folder(output) as staging:
        size_mb = save_model(encoder, staging, EXPORT_DTYPES[dtype], max_mb)
        drop_classifier_fields(staging)
        processor.save_pretrained(staging)
        exported = write_check(staging, encoder, processor, "backbone", dtype)
        save_timm_backbone(exported, staging, EXPORT_DTYPES[dtype])
        card = backbone_card(
            encoder.config, data_keys, find_pretrain_summary(pretrain_dir), license_id or license_default,
            license_note, repo_id or output.name, dtype, size_mb, model_dir.name if from_classifier else None, init,
        )
        (staging / "README.md").write_text(card)
        record_export_inputs(staging, {"repo_id": repo_id or output.name, "license_id": license_id,
                                       "source_model": model_dir.name if from_classifier else None,
                                       "pretrain_data": data_keys if from_classifier else pretrain_keys})
        keep_recorded_outputs(staging, previous_check(output))
        finish_folder(staging)
    return output


__all__ = ["export_backbone", "export_classifier", "rerender_classifier_card", "set_decision_rule"]
