"""The classifier a fold starts from (pretrained folder, random or ImageNet init), its processor, saving."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

import usvcl_hf
from training import imagenet_init
from training.common import create_model
from training.config import FinetuneConfig

INITS = ("pretrained", "random", "imagenet")
DEFAULT_IMAGE_SIZE = 224


def class_weights(labels: np.ndarray, num_classes: int = 2) -> list[float]:
    """`n / (K * n_k)` per class from training-side counts (balanced cross-entropy)."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return [float(len(labels) / (num_classes * max(count, 1.0))) for count in counts]


def build_classifier(
    config: FinetuneConfig, image_size: int, weights: list[float] | None, id2label: dict[int, str] | None = None,
) -> usvcl_hf.UsvclForImageClassification:
    """A fresh classifier from the init source (pretrained folder / Hub id, random, or timm ImageNet weights), its
    classes named by `id2label` (the store's `ClassLabel`; the model's default benign / malignant without it)."""
    labels = {} if not id2label else {"id2label": id2label, "label2id": {name: k for k, name in id2label.items()}}
    head = dict(
        **labels,
        class_weights=weights,
        trainable_layers=config.trainable_layers,
        classifier_hidden_dim=config.classifier_hidden_dim,
        classifier_dropout=config.classifier_dropout,
        image_size=image_size,
    )
    if config.init == "pretrained":
        model = usvcl_hf.UsvclForImageClassification.from_pretrained(config.pretrained_path, **head)
    else:
        model_config = usvcl_hf.UsvclConfig(
            backbone=config.backbone, in_chans=config.in_chans, init_from_imagenet=config.init == "imagenet", **head
        )
        model = create_model(usvcl_hf.UsvclForImageClassification, model_config)
    model.config.init_from_imagenet = False  # a saved folder must never download again
    model.usvcl.set_trainable_layers(model.config.trainable_layers)  # the model config records what is trained
    model.usvcl.projection.requires_grad_(False)  # the classifier reads pooled features; DDP needs no unused params
    return model


def for_fold(config: FinetuneConfig, fold: int | str) -> FinetuneConfig:
    """The config with `{fold}` in `pretrained_path` replaced by `fold` (a fold number, or "all" for the final
    model): per-fold pretrained encoders, e.g. pretrained on BUS-BRA without that fold's test patients."""
    if config.init != "pretrained" or not config.pretrained_path or "{fold}" not in config.pretrained_path:
        return config
    return dataclasses.replace(config, pretrained_path=config.pretrained_path.replace("{fold}", str(fold)))


def resolve_image_size(config: FinetuneConfig) -> tuple[int, str]:
    """Input size and resize mode: the config's, else the pretrained model's, else 224 / pad."""
    if config.init == "pretrained":
        if not config.pretrained_path:
            raise ValueError("init 'pretrained' needs `pretrained_path` (a usvcl folder or Hub id).")
        pretrained = usvcl_hf.UsvclConfig.from_pretrained(config.pretrained_path)
        return config.image_size or pretrained.image_size, config.resize_mode or pretrained.resize_mode
    return config.image_size or DEFAULT_IMAGE_SIZE, config.resize_mode or "pad"


def build_processor(config: FinetuneConfig, image_size: int, resize_mode: str) -> usvcl_hf.UsvclImageProcessor:
    """The processor saved with the model: the pretrained folder's normalisation, ImageNet's for an offline
    ImageNet init (`training.imagenet_init`), else the processor's defaults."""
    normalization = imagenet_init.processor_normalization(config.backbone, config.in_chans, config.init == "imagenet")
    if config.init == "pretrained":
        pretrained = usvcl_hf.UsvclImageProcessor.from_pretrained(config.pretrained_path)
        normalization = {"image_mean": pretrained.image_mean, "image_std": pretrained.image_std}
    return usvcl_hf.UsvclImageProcessor(image_size=image_size, in_chans=config.in_chans, resize_mode=resize_mode,
                                        **normalization)


def save_model(
    model: usvcl_hf.UsvclForImageClassification, processor: usvcl_hf.UsvclImageProcessor, folder: Path,
    threshold: float, calibration: tuple[float, float], config: FinetuneConfig,
) -> None:
    """Save a classifier with its decision threshold, calibration (temperature, bias) and input (whole images, or
    lesion crops with their margin), plus the processor."""
    model.config.decision_threshold = float(np.clip(threshold, 0.0, 1.0))
    model.config.calibration_temperature, model.config.calibration_bias = map(float, calibration)
    model.config.lesion_crop_margin = float(config.crop_margin) if config.lesion_crop else None
    model.to("cpu").save_pretrained(str(folder))
    processor.save_pretrained(str(folder))

