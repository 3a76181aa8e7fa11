"""Dataclass configs for pretraining and fine-tuning, parsed by transformers' `HfArgumentParser` with YAML files.

Precedence: dataclass defaults < `--config file.yaml` < explicit `--field value` options. Every field is an option
spelled `--field_name` and `--field-name`; booleans take `--field`, `--field false` and `--no-field`.

The model's own fields are written once, in `usvcl_hf.UsvclConfig`: `PretrainConfig.model` is a `UsvclConfig`, and
its options (`--backbone`, `--loss`, ...) are generated from the fields named in `PRETRAIN_MODEL_FIELDS`, with the
model's defaults. YAML files and `pretrain_config.json` stay flat (`backbone: densenet121` next to `batch_size: 4`).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from transformers import HfArgumentParser

import usvcl_hf
from training.cli_inputs import require_inputs

MODEL = usvcl_hf.UsvclConfig  # the model's defaults, so the training configs cannot drift from them
ConfigT = TypeVar("ConfigT")
NONE_STRINGS = ("none", "null")
PRETRAIN_MODEL_FIELDS = (
    "backbone", "image_size", "in_chans", "embedding_dim", "projection_hidden_dim", "init_from_imagenet",
    "loss", "margin", "num_hard_positives", "num_hard_negatives", "positive_reduction", "temperature",
    "num_positives", "num_negatives",
)
RENAMED_FIELDS = {"num_labels": "train_sizes"}  # old YAML keys still read


def option(default: Any = None, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field with `--help` text (lists get a fresh default each time)."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help, **kwargs})
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def model_arguments(name: str, field_names: Sequence[str]) -> type:
    """A dataclass of `UsvclConfig` fields (`field_names`) with the model's types and defaults: CLI/YAML options."""
    fields = [(field, type(getattr(MODEL, field)), option(getattr(MODEL, field), f"model: UsvclConfig.{field}"))
              for field in field_names]  # every exposed model field has a non-None default of its own type
    return dataclasses.make_dataclass(name, fields)


@dataclasses.dataclass
class PretrainConfig:
    """Everything `training/pretrain/train.py` needs; see `training/configs/*.yaml` for annotated examples."""

    model: usvcl_hf.UsvclConfig = dataclasses.field(
        default_factory=MODEL, metadata={"help": "the model to pretrain", "nested": PRETRAIN_MODEL_FIELDS})
    store_paths: list[str] = option([], "frame stores (datasets.save_to_disk folders), concatenated")
    output_dir: str = option("runs/pretrain", "run folder: checkpoints, model/, history.json, tb/")
    # sampling
    shared_negatives: bool = option(False, "one pool of num_negatives per batch instead of per anchor")
    exclude_test_of: str | None = option(None, "e.g. split_1: drop that fold's test rows from stores that have it")
    augment: bool = option(True, "ultrasound-suited augmentations (training/augment.py)")
    # optimisation
    batch_size: int = option(4, "anchors per batch and process")
    num_epochs: int = option(200, "epochs (unless max_steps > 0)")
    max_steps: int = option(-1, "> 0: stop after this many optimizer steps (overrides num_epochs)")
    max_wall_minutes: float = option(0.0, "> 0: stop early (model still saved) once training has run this long")
    learning_rate: float = option(1e-4, "peak learning rate (AdamW)")
    min_lr: float = option(1e-5, "learning rate at the end of the cosine decay")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    warmup_steps: int = option(0, "linear warm-up steps")
    gradient_accumulation_steps: int = option(1, "batches per optimizer step")
    max_grad_norm: float = option(1.0, "gradient clipping (0 = off)")
    mixed_precision: str = option("no", "no | fp16 | bf16 (fp16 falls back to no on CPU)")
    seed: int = option(42, "seed of the model, the sampler and the augmentations")
    num_workers: int = option(0, "data loader processes")
    # checkpoints, logging, monitor, selection
    checkpoint_every: int = option(500, "optimizer steps between checkpoints")
    keep_checkpoints: int = option(2, "checkpoints kept")
    resume: bool = option(False, "continue from the latest checkpoint in output_dir")
    log_every: int = option(10, "optimizer steps between loss/throughput records")
    holdout_patients: int = option(0, "patients of the frame stores held out of training for the label-free "
                                      "monitor (same-clip retrieval, alignment, uniformity); needed by "
                                      "selection: monitor")
    monitor_store: str | None = option(None, "labelled image store for the k-NN / linear-probe REPORT (never a "
                                             "choice)")
    monitor_every: int = option(0, "optimizer steps between monitor runs (0 = only at the end)")
    monitor_k: int = option(10, "k of the k-NN report")
    monitor_max_images: int = option(400, "images (frames) each monitor embeds at most")
    monitor_split_column: str = option("split_1", "labelled rows whose value is train or val here (never test)")
    selection: str = option("loss", "loss (lowest epoch loss, the paper) | monitor (best held-out same-clip "
                                    "retrieval mAP, label-free)")

    @classmethod
    def from_values(cls, **values: Any) -> PretrainConfig:
        """A config from flat values, as in a YAML file: `PretrainConfig.from_values(backbone="resnet18", ...)`."""
        return build_config(cls, values)


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
    mask_loss_weight: float = 0.0  # > 0: auxiliary lesion-mask loss on the last feature map (store needs `mask`)
    tta_flip: bool = False  # validation / test logits: mean over the image and its horizontal mirror
    lesion_crop: bool = False  # classify the lesion's box plus `crop_margin` (training / validation boxes: `mask`)
    crop_margin: float = 0.2  # lesion crops: the box grown by this share of its width / height on each side
    eval_boxes: list[str] | None = dataclasses.field(
        default=None, metadata={"help": "lesion crops: `training.lesion.train` boxes.csv files; each fold's "
                                        "validation and test images are cut by the boxes of that fold's segmenter "
                                        "(same seed: same inner splits), else by their masks' (an upper bound)"})
    # cross-validation
    split: str = option("folds", "folds: the store's official folds (else grouped CV); cross_device: one split "
                                 "by scanner (store column `device`): trains on GE, tests on Toshiba and U-Systems")
    num_folds: int = 5  # used when the store has no official folds
    folds: list[int] | None = None  # run only these folds (1-based)
    val_fraction: float = 0.2  # inner validation share of each fold's non-test rows (always redrawn by patient)
    split_seed: int | None = dataclasses.field(
        default=None, metadata={"help": "seed of the inner validation splits (default: `seed`); fix it so that "
                                        "runs of several training seeds share them (ensembles)"})
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
    train_sizes: list[int] | None = dataclasses.field(
        default=None, metadata={"aliases": ["--num-labels", "--num_labels"],
                                "help": "label efficiency: training-set sizes (images, drawn by patient)"})
    label_draws: int = 3
    # final model
    final_model: bool = True
    final_from: list[str] | None = dataclasses.field(
        default=None, metadata={"help": "train the final model only, with the median best epoch and threshold of "
                                        "these cross-validation runs' folds (their results.json files, e.g. the parts "
                                        "of a run split by --folds); no cross-validation is run"})
    final_holdout_fraction: float = 0.15  # patient-grouped share held out to fit the final temperature
    save_fold_models: bool = False  # keep each fold's model in output_dir/fold_<k>/model (saliency study)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default."""


def nested_fields(config_class: type) -> dict[str, tuple[str, ...]]:
    """`{field: option names}` of the fields of `config_class` that hold a nested `UsvclConfig`."""
    return {field.name: field.metadata["nested"] for field in dataclasses.fields(config_class)
            if "nested" in field.metadata}


def flat_arguments(config_class: type) -> list[type]:
    """The dataclasses `HfArgumentParser` reads for `config_class`: its own plain fields, then each nested model's."""
    plain = [(field.name, field.type, field) for field in dataclasses.fields(config_class)
             if "nested" not in field.metadata]
    hints = typing.get_type_hints(config_class)
    plain = [(name, hints[name], field) for name, _, field in plain]
    classes = [dataclasses.make_dataclass(f"{config_class.__name__}Arguments", plain)]
    classes += [model_arguments(f"{config_class.__name__}{name.title()}Arguments", names)
                for name, names in nested_fields(config_class).items()]
    return classes


def _add_negative_flags(parser: argparse.ArgumentParser, classes: list[type]) -> None:
    """`--no-field` / `--no_field` for booleans that default to False (HfArgumentParser adds them for True only)."""
    for config_class in classes:
        for field in dataclasses.fields(config_class):
            if field.type in (bool, "bool") and field.default is False:
                parser.add_argument(f"--no_{field.name}", f"--no-{field.name.replace('_', '-')}",
                                    action="store_false", dest=field.name, help=argparse.SUPPRESS)


def build_parser(config_class: type, description: str, prog: str | None = None) -> HfArgumentParser:
    """An `HfArgumentParser` with `--config` and one option per (flattened) field of `config_class`."""
    classes = flat_arguments(config_class)
    parser = HfArgumentParser(classes, prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--config", type=str, help="YAML file with field values (options given here win).")
    _add_negative_flags(parser, classes)
    return parser


def read_yaml(config_file: str, known: set[str]) -> dict[str, Any]:
    """The values of a flat YAML config (old field names renamed); raise naming the file for unknown fields."""
    values = yaml.safe_load(Path(config_file).read_text()) or {}
    values = {RENAMED_FIELDS.get(key, key): value for key, value in values.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{config_file}: unknown fields {unknown}; allowed: {sorted(known)}")
    return values


def _none_strings(values: dict[str, Any], hints: dict[str, Any]) -> dict[str, Any]:
    """Optional fields given as "none" / "null" on the command line become None."""
    optional = {name for name, hint in hints.items() if type(None) in typing.get_args(hint)}
    return {name: None if name in optional and isinstance(value, str) and value.lower() in NONE_STRINGS else value
            for name, value in values.items()}


def load_config(
    config_class: type[ConfigT], argv: Sequence[str] | None = None, description: str = "", prog: str | None = None
) -> ConfigT:
    """Parse `argv` into `config_class`: defaults, then the `--config` YAML, then explicit options."""
    parser = build_parser(config_class, description or (config_class.__doc__ or ""), prog)
    pre_parser = argparse.ArgumentParser(add_help=False)
    pre_parser.add_argument("--config", type=str)
    config_file = pre_parser.parse_known_args(argv)[0].config
    require_inputs(prog or parser.prog, {"--config": config_file})
    classes = flat_arguments(config_class)
    hints = {name: hint for cls in classes for name, hint in typing.get_type_hints(cls).items()}
    if config_file is not None:
        parser.set_defaults(**read_yaml(config_file, set(hints)))
    namespace = parser.parse_args(argv)
    values = _none_strings({name: getattr(namespace, name) for name in hints}, hints)
    return build_config(config_class, values)


def build_config(config_class: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """`config_class` from flat `values`: nested model fields go into a `UsvclConfig` (which validates them)."""
    nested = nested_fields(config_class)
    model_names = {name for names in nested.values() for name in names}
    plain = {name: value for name, value in values.items() if name not in model_names}
    models = {field: MODEL(**{name: values[name] for name in names if name in values})
              for field, names in nested.items()}
    return config_class(**plain, **models)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a flat plain dict (for JSON / YAML / logs): nested model fields inline."""
    nested = nested_fields(type(config))
    values = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)
              if field.name not in nested}
    for field, names in nested.items():
        values.update({name: getattr(getattr(config, field), name) for name in names})
    return _plain(values)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Deep-copied lists/dicts, so the dict can be changed without touching the config."""
    return {name: (list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value)
            for name, value in values.items()}


__all__ = ["FinetuneConfig", "PretrainConfig", "build_parser", "config_to_dict", "load_config"]
