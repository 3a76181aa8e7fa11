"""Tiny fine-tuning and pretraining outputs and their exported folders, for the export, OOD and publishing tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from training import export
from usvcl_hf import UsvclConfig, UsvclForContrastivePretraining, UsvclForImageClassification, UsvclImageProcessor

TINY_CONFIG = dict(backbone="resnet18", image_size=64, embedding_dim=16, projection_hidden_dim=32,
                   classifier_hidden_dim=8, num_positives=2, num_negatives=3)
TEST_MAX_MB = 40.0  # resnet18 in float16 is ~22 MB, over the 20 MB limit meant for densenet121
HEAD_STD = 0.5  # large head weights, so the recorded logits are far from zero and the fixture check means something
SAVED_TEMPERATURE = 1.0
RESULTS_TEMPERATURE = 1.7
RESULTS_THRESHOLD = 0.37
FOLDS = 5
FIGURES = ("roc", "reliability", "confusion")  # label_efficiency is null in the fake results
PRETRAIN_STORES = ["stores/covid_blues", "stores/pocus"]


def metric(value: float) -> dict[str, float]:
    """A metric entry of results.json with a confidence interval around `value`."""
    return {"value": value, "ci_low": round(value - 0.05, 4), "ci_high": round(value + 0.03, 4)}


def fake_results() -> dict:
    """A results.json with the CONTRACT.md schema and numbers chosen here."""
    pooled = {"auc": metric(0.871), "sensitivity": metric(0.802), "specificity": metric(0.833),
              "accuracy": metric(0.822), "ece_before": metric(0.094), "ece_after": metric(0.031)}
    return {
        "command": "python -m training.finetune --config tiny.yaml", "commit": "0123abc",
        "machine": "x86_64 2-core CPU (x86_64), no GPU",
        "wall_time_s": 5400.0, "init": "runs/pretrain/model",
        "config": {"learning_rate": 0.0003, "epochs": 4, "batch_size": 16, "augment": {"flip": True}},
        "folds": [{"fold": k, "n_train": 1200, "n_val": 299, "n_test": 376, "threshold": 0.4, "temperature": 1.5,
                   "metrics": pooled} for k in range(1, FOLDS + 1)],
        "pooled": pooled,
        "mean_std": {name: {"mean": entry["value"], "std": 0.012} for name, entry in pooled.items()},
        "figures": {"roc": "roc.png", "reliability": "reliability.png", "confusion": "confusion.png",
                    "label_efficiency": None},
        "final_model": {"path": "final_model", "threshold": RESULTS_THRESHOLD, "temperature": RESULTS_TEMPERATURE},
    }


def build_finetune_output(root: Path) -> Path:
    """A tiny fine-tuning output: final_model/ (random resnet18, 64 px), results.json, plots. Returns its folder."""
    folder = root / "finetune"
    torch.manual_seed(0)
    model = UsvclForImageClassification(UsvclConfig(**TINY_CONFIG, calibration_temperature=SAVED_TEMPERATURE))
    with torch.no_grad():
        for parameter in model.classifier.parameters():
            parameter.normal_(std=HEAD_STD)
    model.save_pretrained(folder / "final_model")
    UsvclImageProcessor(image_size=TINY_CONFIG["image_size"]).save_pretrained(folder / "final_model")
    (folder / "results.json").write_text(json.dumps(fake_results()))
    for name in FIGURES:
        PIL.Image.fromarray(np.full((8, 8), 128, np.uint8)).save(folder / f"{name}.png")
    return folder


def build_pretrain_output(root: Path) -> Path:
    """A tiny pretraining output: model/ (UsvclForContrastivePretraining) and pretrain_config.json."""
    folder = root / "pretrain"
    torch.manual_seed(1)
    UsvclForContrastivePretraining(UsvclConfig(**TINY_CONFIG)).save_pretrained(folder / "model")
    UsvclImageProcessor(image_size=TINY_CONFIG["image_size"]).save_pretrained(folder / "model")
    (folder / "pretrain_config.json").write_text(json.dumps({"store_paths": PRETRAIN_STORES, "epochs": 2}))
    return folder


def export_tiny_classifier(root: Path, **kwargs) -> Path:
    """Build the tiny outputs under `root` and export the classifier to `root/export/classifier`."""
    finetune, pretrain = build_finetune_output(root), build_pretrain_output(root)
    options = dict(pretrain_dir=pretrain, max_mb=TEST_MAX_MB, repo_id="test-org/usvcl-tiny", **kwargs)
    return export.export_classifier(finetune / "final_model", finetune / "results.json",
                                    root / "export" / "classifier", **options)


def export_tiny_backbone(root: Path) -> Path:
    """Build a tiny pretraining output under `root` and export its encoder to `root/export/backbone`."""
    pretrain = build_pretrain_output(root)
    return export.export_backbone(pretrain / "model", root / "export" / "backbone", pretrain_dir=pretrain,
                                  max_mb=TEST_MAX_MB)
