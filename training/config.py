"""Dataclass configs for pretraining and fine-tuning: YAML file plus command-line overrides.

Precedence: dataclass defaults < `--config file.yaml` < explicit `--field value` options. Every field becomes an
option spelled `--field_name` and `--field-name` (so `--help` lists every field); booleans also get `--no-field`.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

import usvcl_hf

MODEL = usvcl_hf.UsvclConfig  # the model's defaults, so the training configs cannot drift from them
ConfigT = TypeVar("ConfigT")
NONE_STRINGS = ("none", "null")


@dataclasses.dataclass
class PretrainConfig:
    """Everything `training/pretrain.py` needs; see `training/configs/*.yaml` for annotated examples."""

    store_paths: list[str] = dataclasses.field(default_factory=list)  # frame stores, concatenated
    output_dir: str = "runs/pretrain"
    # model
    backbone: str = MODEL.backbone
    image_size: int = MODEL.image_size
    in_chans: int = MODEL.in_chans
    embedding_dim: int = MODEL.embedding_dim
    projection_hidden_dim: int = MODEL.projection_hidden_dim
    init_from_imagenet: bool = MODEL.init_from_imagenet
    # loss
    loss: str = MODEL.loss  # "hard_triplet" | "info_nce"
    margin: float = MODEL.margin
    num_hard_positives: int = MODEL.num_hard_positives
    num_hard_negatives: int = MODEL.num_hard_negatives
    positive_reduction: str = MODEL.positive_reduction
    temperature: float = MODEL.temperature
    # sampling
    num_positives: int = MODEL.num_positives
    num_negatives: int = MODEL.num_negatives
    shared_negatives: bool = False  # one pool of num_negatives per batch instead of per anchor
    exclude_test_of: str | None = None  # e.g. "split_1": drop that fold's test rows from stores that have the column
    augment: bool = True
    # optimisation
    batch_size: int = 4
    num_epochs: int = 200
    max_steps: int = -1  # > 0: stop after this many optimizer steps (overrides num_epochs)
    max_wall_minutes: float = 0.0  # > 0: stop early (model still saved) once training has run this long
    learning_rate: float = 1e-4
    min_lr: float = 1e-5
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16" (fp16 falls back to "no" on CPU)
    seed: int = 42
    num_workers: int = 0
    # checkpoints, logging, selection
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = False
    log_every: int = 10
    monitor_store: str | None = None  # labelled image store (e.g. BUS-BRA) for the k-NN / linear-probe monitor
    monitor_every: int = 0  # 0 = only at the end
    monitor_k: int = 10
    monitor_max_images: int = 400
    monitor_split_column: str = "split_1"  # rows whose value is "train" or "val" (never "test") are used
    selection: str = "loss"  # "loss" (lowest epoch loss, the paper) | "monitor" (highest probe AUC)


@dataclasses.dataclass
class FinetuneConfig:
    """Everything `training/finetune.py` needs; see `training/configs/*.yaml`."""

    store_path: str = "stores/bus_bra"
    output_dir: str = "runs/finetune"
    init: str = "pretrained"  # "pretrained" | "random" | "imagenet"
    pretrained_path: str | None = None  # usvcl folder or Hub id (init == "pretrained"); "{fold}" -> fold number / "all"
    backbone: str = MODEL.backbone  # used by init "random" / "imagenet"
    image_size: int = 0  # 0 = the pretrained model's size (224 for random / imagenet)
    in_chans: int = MODEL.in_chans
    trainable_layers: int = MODEL.trainable_layers
    classifier_hidden_dim: int = MODEL.classifier_hidden_dim
    classifier_dropout: float = MODEL.classifier_dropout
    resize_mode: str = ""  # "" = the pretrained model's ("pad" for random / imagenet) | "pad" | "crop"
    augment: bool = True
    augment_policy: str = "standard"  # training/augment.py AUGMENT_POLICIES: "standard" | "light" | "strong" | "flip"
    class_weighted_loss: bool = True
    label_smoothing: float = 0.0  # cross-entropy targets (1 - e) one-hot + e / 2
    ema_decay: float = 0.0  # > 0: validate, select and save an exponential moving average of the weights
    tta_flip: bool = False  # validation / test logits: mean over the image and its horizontal mirror
    # cross-validation
    num_folds: int = 5  # used when the store has no official folds
    folds: list[int] | None = None  # run only these folds (1-based)
    val_fraction: float = 0.2  # inner validation share of each fold's non-test rows (always redrawn by patient)
    # optimisation
    batch_size: int = 16
    eval_batch_size: int = 64
    num_epochs: int = 20
    max_steps_per_epoch: int = -1  # > 0 caps an epoch (smoke tests)
    max_steps: int = -1  # > 0: this many optimizer steps whatever the training-set size (num_epochs = validations)
    learning_rate: float = 1e-4
    backbone_lr_scale: float = 1.0  # backbone learning rate = learning_rate * this (heads at learning_rate)
    min_lr: float = 1e-6
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"  # "bf16" autocasts on CPUs too (fast with AMX); "fp16" needs a GPU
    channels_last: bool = False  # NHWC convolutions while training (faster with bf16 on AMX CPUs and GPUs)
    seed: int = 42
    num_workers: int = 0
    # evaluation
    bootstrap_samples: int = 1000
    ece_bins: int = 10
    # label efficiency
    num_labels: list[int] | None = None  # training-set sizes (images, drawn by patient)
    label_draws: int = 3
    # final model
    final_model: bool = True
    final_holdout_fraction: float = 0.15  # patient-grouped share held out to fit the final temperature
    save_fold_models: bool = False  # keep each fold's model in output_dir/fold_<k>/model (saliency study)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """`X | None` -> (X, True); anything else -> (annotation, False)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        return next(arg for arg in args if arg is not type(None)), True
    return annotation, False


def _scalar_parser(kind: type, optional: bool) -> typing.Callable[[str], Any]:
    """A string -> value converter for argparse (accepts "none" for optional fields)."""

    def convert(text: str) -> Any:
        if optional and text.lower() in NONE_STRINGS:
            return None
        return kind(text)

    return convert


def build_parser(config_class: type, description: str) -> argparse.ArgumentParser:
    """An `ArgumentParser` with `--config` and one option per dataclass field (defaults suppressed)."""
    parser = argparse.ArgumentParser(description=description, argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", type=str, help="YAML file with field values (options given here win).")
    hints = typing.get_type_hints(config_class)
    defaults = config_class()
    for field in dataclasses.fields(config_class):
        kind, optional = _unwrap_optional(hints[field.name])
        names = sorted({f"--{field.name}", f"--{field.name.replace('_', '-')}"}, key=len, reverse=True)
        help_text = f"default: {getattr(defaults, field.name)!r}"
        if kind is bool:
            parser.add_argument(*names, dest=field.name, action=argparse.BooleanOptionalAction, help=help_text)
        elif typing.get_origin(kind) is list:
            (item_kind,) = typing.get_args(kind)
            parser.add_argument(*names, dest=field.name, nargs="+", type=item_kind, help=help_text)
        else:
            parser.add_argument(*names, dest=field.name, type=_scalar_parser(kind, optional), help=help_text)
    return parser


def load_config(config_class: type[ConfigT], argv: Sequence[str] | None = None, description: str = "") -> ConfigT:
    """Parse `argv` into `config_class`: defaults, then the `--config` YAML, then explicit options."""
    parser = build_parser(config_class, description or (config_class.__doc__ or ""))
    options = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config_file = options.pop("config", None)
    if config_file is not None:
        values.update(yaml.safe_load(Path(config_file).read_text()) or {})
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{config_file}: unknown fields {unknown}; allowed: {sorted(known)}")
    values.update(options)
    return config_class(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a plain dict (for JSON / logs)."""
    return dataclasses.asdict(config)


__all__ = ["FinetuneConfig", "PretrainConfig", "build_parser", "config_to_dict", "load_config"]
