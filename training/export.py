"""Export a trained usvcl model as a Hub-ready folder (weights in half precision, code, processor, card, plots).

Three kinds:

- `classifier`: a fine-tuned `UsvclForImageClassification` folder plus its `results.json` -> a folder that
  `AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)` and
  `pipeline("image-classification", model=folder, trust_remote_code=True)` load, with the model card rendered from
  `model_card.md` and the evaluation plots.
- `backbone`: a pretraining output (`PRETRAIN_OUTPUT/model`, a `UsvclForContrastivePretraining` folder) -> the
  encoder (`AutoModel` gives L2-normalised embeddings) plus `timm_backbone.safetensors`, a plain timm state dict
  that `timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=...), in_chans=1, num_classes=0)`
  loads.
- `lesion`: the lesion segmenter of `training.train_lesion` (`RUN/final_model` plus `RUN/results.json`), card from
  `lesion_card.md` (`training/export_lesion.py`).

Weights are stored in float16 (or bfloat16) and load back as float32: `config.json` says `"dtype": "float32"`, which
transformers 5 reads when `from_pretrained` is called with its default `dtype="auto"`. Every folder holds
`export_check.json`: a seeded input and the outputs the exported weights gave at export time, so a test can check
that the bundled model still gives them. The folder is written next to `--output` and renamed into place; it is
never edited by hand.

    python -m training.export --kind classifier --model-dir RUN/final_model --results RUN/results.json \
        --pretrain-dir PRETRAIN_RUN --output models/usvcl-densenet121-busbra
    python -m training.export --kind backbone --pretrain-dir PRETRAIN_RUN --output models/usvcl-resnet10t-backbone
    python -m training.export --kind lesion --model-dir runs/lesion/final_model --results runs/lesion/results.json \
        --output models/usvcl-lesion-busbra
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import timm
import torch
import transformers
from huggingface_hub import EvalResult, ModelCard, ModelCardData

import usvcl_hf
from training import imagenet_init
from training.atomic import atomic_folder
from usvcl_hf import UsvclConfig, UsvclForContrastivePretraining, UsvclForImageClassification, UsvclImageProcessor
from usvcl_hf.image_processing_usvcl import MIN_IMAGE_SIDE

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER_CARD_TEMPLATE = REPO_ROOT / "model_card.md"
BACKBONE_CARD_TEMPLATE = REPO_ROOT / "backbone_card.md"
KINDS = ("classifier", "backbone", "lesion")
EXPORT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_EXPORT_DTYPE = "float16"
KEEP_FLOAT32 = "feature_density."  # UsvclFeatureDensity buffers (training.ood) stay float32 in the weights file
LOAD_DTYPE = "float32"  # written to config.json: what `from_pretrained` gives by default
MAX_WEIGHTS_MB = 20.0
BYTES_PER_MB = 1024 * 1024
WEIGHTS_FILE = "model.safetensors"
TIMM_WEIGHTS_FILE = "timm_backbone.safetensors"
CHECK_FILE = "export_check.json"
RESULTS_COPY = "results.json"
CHECK_SEED = 2408_10600
CHECK_IMAGE_SHAPE = (96, 128)  # (H, W) of the seeded uint8 check image; not square on purpose (tests the resize)
TIMM_CHECK_SIZE = 64  # side of the input used to compare the timm file with the exported backbone
CHECK_ATOL = 1e-4  # same weights, same maths, float32 on CPU: differences come only from kernel choice
MAX_PROBABILITY_SHIFT = 0.02  # largest change of a class probability that half precision may cause
CLASSIFIER_FIGURES = ("roc", "reliability", "label_efficiency", "confusion")
LABEL_EFFICIENCY_FILE = "label_efficiency.png"
METRICS = ("auc", "sensitivity", "specificity", "accuracy")
ECE_METRICS = ("ece_before", "ece_after")
MODEL_INDEX_METRIC_TYPES = {"auc": "roc_auc", "sensitivity": "recall", "specificity": "specificity",
                            "accuracy": "accuracy", "ece_after": "ece"}
NON_PRETRAINED_INITS = ("random", "scratch", "none", "imagenet", "timm")
PRETRAIN_SUMMARY_FILES = ("pretrain_config.json", "results.json", "summary.json")  # first found is used
PRETRAIN_HISTORY_FILE = "history.json"  # training.pretrain's monitor records, one per monitored step
NO_GPU = "no GPU"  # how finetune.machine_description names a run without one
LICENSE_PERMISSIVE = "cc-by-4.0"
LICENSE_NON_COMMERCIAL = "cc-by-nc-4.0"
PAPER_ARXIV = "2408.10600"
PUBLISHED_FILE_MODE = 0o644
PUBLISHED_DIR_MODE = 0o755


@dataclass(frozen=True)
class DatasetInfo:
    """A data set the weights may derive from: what the card says about it."""

    key: str
    name: str
    what: str
    license: str
    non_commercial: bool
    url: str
    citation: str
    markers: tuple[str, ...]  # lower-case strings whose presence in a pretraining summary means the set was used


DATASETS = {
    info.key: info
    for info in (
        DatasetInfo(
            key="bus_bra",
            name="BUS-BRA",
            what="1,875 biopsy-proven breast ultrasound images (1,268 benign, 607 malignant) of 1,064 patients, "
            "Brazil, with the official patient-grouped cross-validation folds",
            license="permissive (MIT-style), citation required",
            non_commercial=False,
            url="https://doi.org/10.1002/mp.16812",
            citation='W. Gómez-Flores, M. J. Gregorio-Calas, W. C. de Albuquerque Pereira, "BUS-BRA: A Breast '
            'Ultrasound Dataset for Assessing Computer-aided Diagnosis Systems", Medical Physics 51(4):3110–3123, '
            "2024, doi:10.1002/mp.16812",
            markers=("bus_bra", "bus-bra", "busbra"),
        ),
        DatasetInfo(
            key="covid_blues",
            name="COVID-BLUES",
            what="115 lung ultrasound clips of 20 patients (6 scan points each)",
            license="CC BY-NC-ND 4.0",
            non_commercial=True,
            url="https://github.com/NinaWie/COVID-BLUES",
            citation="N. Wiedemann et al., COVID-BLUES lung ultrasound dataset, IEEE Journal of Biomedical and "
            "Health Informatics, 2025",
            markers=("covid_blues", "covid-blues", "covidblues"),
        ),
        DatasetInfo(
            key="pocus",
            name="POCUS (CC BY 4.0 part)",
            what="39 lung ultrasound clips of 9 patients (convex and linear probes)",
            license="CC BY 4.0",
            non_commercial=False,
            url="https://github.com/jannisborn/covid19_ultrasound",
            citation='J. Born et al., "Accelerating detection of lung pathologies with explainable ultrasound image '
            'analysis", Applied Sciences 11(2):672, 2021',
            markers=("pocus",),
        ),
    )
}


class ExportError(RuntimeError):
    """An export that cannot go on; the message says what is wrong and what to do."""


# ----------------------------------------------------------------------------------------------------------- inputs


def read_json(path: Path, expected: type = dict) -> Any:
    """Read a JSON object (or `expected`, e.g. `list`), or raise an `ExportError` naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ExportError(f"Cannot read {path}: {error}") from error
    if not isinstance(data, expected):
        raise ExportError(f"{path} must hold a JSON {'object' if expected is dict else expected.__name__}.")
    return data


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
    print(f"note: {model_dir} has no preprocessor_config.json; building the processor from config.json")
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


def detect_datasets(text: str) -> list[str]:
    """Keys of `DATASETS` whose markers occur in `text` (case-insensitive), in `DATASETS` order."""
    lowered = text.lower()
    return [key for key, info in DATASETS.items() if any(marker in lowered for marker in info.markers)]


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


def choose_license(dataset_keys: Iterable[str]) -> tuple[str, str]:
    """(Hub licence id, one-paragraph explanation) for weights derived from these data sets."""
    used = [DATASETS[key] for key in dataset_keys]
    non_commercial = [info.name for info in used if info.non_commercial]
    if non_commercial:
        return LICENSE_NON_COMMERCIAL, (
            f"The weights derive from {', '.join(non_commercial)}, which is licensed for non-commercial use only "
            f"({', '.join(info.license for info in used if info.non_commercial)}). They are therefore released "
            "under CC BY-NC 4.0: research and other non-commercial use only, with attribution of every data set "
            "below. The code is Apache-2.0."
        )
    return LICENSE_PERMISSIVE, (
        "The weights derive only from data sets that allow redistribution with attribution "
        f"({', '.join(f'{info.name}: {info.license}' for info in used)}); they are released under CC BY 4.0, "
        "and anyone using them must cite the data sets below. The code is Apache-2.0."
    )


# ---------------------------------------------------------------------------------------------------------- weights


def half_state_dict(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The model's state dict with floating-point tensors cast to `dtype` (integer buffers and the
    out-of-distribution statistics, `KEEP_FLOAT32`, kept: a mean in half precision would shift small variances)."""
    return {
        name: tensor.detach().to(dtype).contiguous()
        if tensor.is_floating_point() and KEEP_FLOAT32 not in name else tensor.detach().contiguous()
        for name, tensor in model.state_dict().items()
    }


def check_file_size(path: Path, max_mb: float) -> float:
    """Size of `path` in MB; raise an `ExportError` when it exceeds `max_mb`."""
    size_mb = path.stat().st_size / BYTES_PER_MB
    if size_mb > max_mb:
        raise ExportError(
            f"{path.name} is {size_mb:.1f} MB, over the {max_mb:.0f} MB limit for a bundled model. Use a smaller "
            "backbone (e.g. densenet121), --dtype float16, or raise --max-size-mb if the folder is not committed."
        )
    return size_mb


def save_model(model: torch.nn.Module, folder: Path, dtype: torch.dtype, max_mb: float) -> float:
    """`save_pretrained` with half-precision weights and `"dtype": "float32"` in config.json; returns the MB."""
    model.config.dtype = LOAD_DTYPE
    model.save_pretrained(folder, state_dict=half_state_dict(model, dtype))
    if not (folder / WEIGHTS_FILE).is_file():
        raise ExportError(f"save_pretrained did not write one {WEIGHTS_FILE} in {folder} (sharded?).")
    config = read_json(folder / "config.json")
    if config.get("dtype") != LOAD_DTYPE or "auto_map" not in config:
        raise ExportError(f"config.json must say dtype={LOAD_DTYPE!r} and hold auto_map; got {config.get('dtype')!r}.")
    return check_file_size(folder / WEIGHTS_FILE, max_mb)


def set_decision_rule(config: UsvclConfig, temperature: float, threshold: float) -> None:
    """Temperature scaling and the decision threshold, folded into the logits (`threshold_in_logits`) so that
    `argmax(logits)` is the calibrated decision at every door (pipeline, `predict_clip`, demo)."""
    config.calibration_temperature = float(temperature)
    config.decision_threshold = float(threshold)
    config.threshold_in_logits = True
    config.validate_usvcl()


def check_input(config: UsvclConfig) -> np.ndarray:
    """The seeded `(1, C, S, S)` float32 input recorded in `export_check.json`."""
    rng = np.random.default_rng(CHECK_SEED)
    return rng.standard_normal((1, config.in_chans, config.image_size, config.image_size)).astype(np.float32)


def check_image() -> np.ndarray:
    """The seeded `(H, W)` uint8 image recorded in `export_check.json` (goes through the image processor)."""
    return np.random.default_rng(CHECK_SEED).integers(0, 256, CHECK_IMAGE_SHAPE, dtype=np.uint8)


def describe_inputs(pixel_values: np.ndarray) -> dict[str, Any]:
    """How a test rebuilds the check inputs, with checksums to tell a changed generator from a changed model."""
    return {
        "pixel_values": {
            "generator": "numpy.random.default_rng(seed).standard_normal(shape).astype(float32)",
            "seed": CHECK_SEED,
            "shape": list(pixel_values.shape),
            "sum": float(pixel_values.sum(dtype=np.float64)),
        },
        "image": {
            "generator": "numpy.random.default_rng(seed).integers(0, 256, shape, dtype=uint8)",
            "seed": CHECK_SEED,
            "shape": list(CHECK_IMAGE_SHAPE),
            "sum": int(check_image().sum(dtype=np.int64)),
        },
    }


def record_outputs(model: torch.nn.Module, processor: UsvclImageProcessor, output_names: tuple[str, ...]) -> dict:
    """Outputs of `model` (float32, eval) on the seeded input and on the processed seeded image."""
    pixel_values = torch.from_numpy(check_input(model.config))
    image_pixels = processor(check_image(), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        on_tensor, on_image = model(pixel_values), model(image_pixels)
    return {
        "pixel_values": {name: on_tensor[name].tolist() for name in output_names},
        "image": {name: on_image[name].tolist() for name in output_names},
    }


def write_check(
    folder: Path, model: torch.nn.Module, processor: UsvclImageProcessor, kind: str, dtype: str
) -> torch.nn.Module:
    """Load the exported folder back (float32), write `export_check.json` with its outputs; return the loaded model."""
    model_class = UsvclForImageClassification if kind == "classifier" else type(model)
    reloaded = model_class.from_pretrained(folder).eval()
    loaded_dtype = next(reloaded.parameters()).dtype
    if loaded_dtype != torch.float32:
        raise ExportError(f"The exported model loads as {loaded_dtype}, not float32: check config.json `dtype`.")
    output_names = ("logits",) if kind == "classifier" else ("embeddings", "pooler_output")
    record = {
        "kind": kind,
        "model_class": model_class.__name__,
        "weights_dtype": dtype,
        "loaded_dtype": "float32",
        "atol": CHECK_ATOL,
        "inputs": describe_inputs(check_input(model.config)),
        "outputs": record_outputs(reloaded, processor, output_names),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "timm": timm.__version__},
    }
    if kind == "classifier":
        record["max_probability_shift_from_float32"] = probability_shift(model, reloaded)
    (folder / CHECK_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return reloaded


def probability_shift(original: torch.nn.Module, exported: torch.nn.Module) -> float:
    """Largest class-probability change that half precision caused on the check input; fail if too large."""
    pixel_values = torch.from_numpy(check_input(original.config))
    with torch.no_grad():
        before = original.eval()(pixel_values).logits.softmax(-1)
        after = exported(pixel_values).logits.softmax(-1)
    shift = float((before - after).abs().max())
    if shift > MAX_PROBABILITY_SHIFT:
        raise ExportError(f"Half precision changes a probability by {shift:.4f} (> {MAX_PROBABILITY_SHIFT}).")
    return shift


def timm_backbone_check(architecture: str, path: Path, reference: torch.nn.Module, in_chans: int) -> None:
    """Load `path` the way a timm user would; check every key is there and the features equal `reference`'s."""
    plain = timm.create_model(
        architecture, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, in_chans=in_chans, num_classes=0
    ).eval()
    missing = sorted(set(plain.state_dict()) - set(safetensors.torch.load_file(path)))
    if missing:
        raise ExportError(f"{path.name} lacks timm keys {missing[:5]} (timm loads it with strict=False).")
    shape = (1, in_chans, TIMM_CHECK_SIZE, TIMM_CHECK_SIZE)
    pixel_values = torch.from_numpy(np.random.default_rng(CHECK_SEED).standard_normal(shape).astype(np.float32))
    with torch.no_grad():
        if not torch.allclose(plain(pixel_values), reference.eval()(pixel_values), atol=CHECK_ATOL):
            raise ExportError(f"timm loads {path.name} into a model that gives other features than the backbone.")


def save_timm_backbone(encoder: torch.nn.Module, folder: Path, dtype: torch.dtype) -> None:
    """Write the encoder's backbone as a plain timm state dict (timm key names, its own stem) and check timm loads it.

    `encoder` is the exported `UsvclModel` loaded back, so both weight files hold the same (rounded) numbers.
    """
    path = folder / TIMM_WEIGHTS_FILE
    config = encoder.config
    metadata = {"format": "pt", "architecture": config.backbone, "in_chans": str(config.in_chans),
                "num_classes": "0", "source": f"usvcl contrastive pretraining (arXiv {PAPER_ARXIV})"}
    safetensors.torch.save_file(half_state_dict(encoder.backbone, dtype), path, metadata=metadata)
    timm_backbone_check(config.backbone, path, encoder.backbone, config.in_chans)


# ------------------------------------------------------------------------------------------------------------ cards


def metric_text(metric: dict[str, float], digits: int = 3) -> str:
    """`0.912 (0.880–0.940)` from `{"value", "ci_low", "ci_high"}`."""
    return f"{metric['value']:.{digits}f} ({metric['ci_low']:.{digits}f}–{metric['ci_high']:.{digits}f})"


def mean_std_text(entry: dict[str, float] | None, digits: int = 3) -> str:
    """`0.912 ± 0.020`, or `n/a`."""
    if not entry:
        return "n/a"
    return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"


def scalar_items(config: dict[str, Any] | None, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten a config dict into `(dotted.key, value)` rows for a hyperparameter table (lists shortened)."""
    rows: list[tuple[str, str]] = []
    for key, value in (config or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(scalar_items(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)) and len(value) > 8:
            rows.append((name, f"[{len(value)} values]"))
        else:
            plain = isinstance(value, (str, int, float)) and not isinstance(value, bool)
            rows.append((name, str(value) if plain else json.dumps(value)))
    return rows


def contrastive_hyperparameters(config: UsvclConfig) -> list[tuple[str, str]]:
    """The contrastive-loss settings stored in the model config."""
    names = ("loss", "margin", "num_hard_positives", "num_hard_negatives", "positive_reduction", "temperature",
             "num_positives", "num_negatives", "embedding_dim", "projection_hidden_dim")
    return [(name, str(getattr(config, name))) for name in names]


def model_index(results: dict[str, Any], model_name: str) -> list[EvalResult]:
    """`model-index` entries: pooled cross-validation metrics on BUS-BRA."""
    split = f"test folds of patient-grouped {len(results['folds'])}-fold cross-validation (pooled)"
    return [
        EvalResult(
            task_type="image-classification",
            task_name="Breast tumour classification (benign / malignant)",
            dataset_type="bus-bra",
            dataset_name="BUS-BRA",
            dataset_split=split,
            metric_type=metric_type,
            metric_name=f"{name} (pooled, 95% CI {results['pooled'][name]['ci_low']:.3f}–"
            f"{results['pooled'][name]['ci_high']:.3f})",
            metric_value=round(float(results["pooled"][name]["value"]), 4),
        )
        for name, metric_type in MODEL_INDEX_METRIC_TYPES.items()
    ]


def fold_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """One formatted row per cross-validation fold."""
    rows = []
    for fold in results["folds"]:
        metrics = fold["metrics"]
        rows.append({
            "fold": str(fold["fold"]),
            "n": f"{fold.get('n_train', '?')} / {fold.get('n_val', '?')} / {fold.get('n_test', '?')}",
            **{name: metric_text(metrics[name]) for name in (*METRICS, *ECE_METRICS) if name in metrics},
            "threshold": f"{fold.get('threshold', float('nan')):.3f}",
            "temperature": f"{fold.get('temperature', float('nan')):.3f}",
        })
    return rows


def dataset_entries(keys: Iterable[str], role: str) -> list[dict[str, str]]:
    """Card rows for the data sets in `keys`, tagged with what they were used for."""
    return [{**DATASETS[key].__dict__, "role": role} for key in keys]


def render_card(template: Path, card_data: ModelCardData, **values: Any) -> str:
    """Render a Jinja model-card template (`{{ card_data }}` is the YAML header) and check it parses back."""
    if not template.is_file():
        raise ExportError(f"Model card template {template} is missing.")
    card = ModelCard.from_template(card_data, template_path=str(template), **values)
    text = str(card)
    ModelCard(text)  # raises on a broken YAML header
    return text


def imagenet_init_text(backbone: str, init: Any, pretrain_summary: dict[str, Any]) -> str | None:
    """The card's sentence on an offline ImageNet initialisation (fine-tuning `init` "imagenet", or a pretraining
    that started from ImageNet), or None."""
    started = str(init).lower() == "imagenet" or bool(pretrain_summary.get("init_from_imagenet"))
    if not started:
        return None
    if imagenet_init.has_offline_weights(backbone):
        return imagenet_init.imagenet_description(backbone)
    return f"timm's ImageNet weights of `{backbone}` (see the timm model card for their licence)"


def classifier_card(
    results: dict[str, Any], config: UsvclConfig, pretrain_data: list[str] | None, pretrain_summary: dict[str, Any],
    figures: dict[str, str], license_id: str, license_note: str, model_name: str, dtype: str, size_mb: float,
    code_url: str | None = None, pretrain_steps: int | None = None,
) -> str:
    """The classifier's README.md from `model_card.md`; `pretrain_steps`: steps the pretraining really ran."""
    used = sorted({"bus_bra", *(pretrain_data or [])}, key=list(DATASETS).index)
    card_data = ModelCardData(
        model_name=model_name,
        license=license_id,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["medical-imaging", "ultrasound", "breast-ultrasound", "breast-cancer", "contrastive-learning",
              "self-supervised-learning", "timm", "usvcl", "custom_code"],
        datasets=[DATASETS[key].name for key in used],
        metrics=["roc_auc", "recall", "specificity", "accuracy", "ece"],
        eval_results=model_index(results, model_name),
    )
    return render_card(
        CLASSIFIER_CARD_TEMPLATE,
        card_data,
        model_name=model_name,
        paper_arxiv=PAPER_ARXIV,
        license_id=license_id,
        license_note=license_note,
        config=config,
        min_image_side=MIN_IMAGE_SIDE,
        backbone=config.backbone,
        pretrained=pretrain_data is not None,
        pretrain_datasets=dataset_entries(pretrain_data or [], "contrastive pretraining"),
        finetune_datasets=dataset_entries(["bus_bra"], "fine-tuning and evaluation"),
        pretrain_hyperparameters=scalar_items(pretrain_summary),
        contrastive_hyperparameters=contrastive_hyperparameters(config),
        finetune_hyperparameters=scalar_items(results.get("config", {})),
        selection=[*results.get("selection", []), *results.get("choices", [])],
        n_folds=len(results["folds"]),
        pooled={name: metric_text(results["pooled"][name]) for name in (*METRICS, *ECE_METRICS)},
        mean_std={name: mean_std_text(results["mean_std"].get(name)) for name in (*METRICS, *ECE_METRICS)},
        folds=fold_rows(results),
        threshold=f"{results['final_model']['threshold']:.3f}",
        temperature=f"{results['final_model']['temperature']:.3f}",
        init=results.get("init", "unknown"),
        imagenet_init=imagenet_init_text(config.backbone, results.get("init"), pretrain_summary),
        command=results.get("command", ""),
        commit=results.get("commit", ""),
        machine=results.get("machine", ""),
        on_gpu=NO_GPU not in results.get("machine", NO_GPU),
        pretrain_steps=pretrain_steps,
        finetune_epochs=(results.get("config") or {}).get("num_epochs"),
        wall_time_h=f"{float(results.get('wall_time_s', 0.0)) / 3600:.1f}",
        figures=figures,
        weights_dtype=dtype,
        size_mb=f"{size_mb:.1f}",
        code_url=code_url,
    )


def backbone_card(
    config: UsvclConfig, pretrain_data: list[str], pretrain_summary: dict[str, Any], license_id: str,
    license_note: str, model_name: str, dtype: str, size_mb: float, classifier_name: str | None = None,
) -> str:
    """The backbone's README.md from `backbone_card.md`; `classifier_name`: the classifier it was taken from."""
    card_data = ModelCardData(
        model_name=model_name,
        license=license_id,
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        tags=["medical-imaging", "ultrasound", "contrastive-learning", "self-supervised-learning", "timm", "usvcl",
              "feature-extraction", "custom_code"],
        datasets=[DATASETS[key].name for key in pretrain_data],
    )
    return render_card(
        BACKBONE_CARD_TEMPLATE,
        card_data,
        model_name=model_name,
        paper_arxiv=PAPER_ARXIV,
        license_id=license_id,
        license_note=license_note,
        config=config,
        backbone=config.backbone,
        pretrain_datasets=dataset_entries(pretrain_data, "contrastive pretraining"),
        pretrain_hyperparameters=scalar_items(pretrain_summary),
        contrastive_hyperparameters=contrastive_hyperparameters(config),
        timm_file=TIMM_WEIGHTS_FILE,
        imagenet_init=imagenet_init_text(config.backbone, None, pretrain_summary),
        weights_dtype=dtype,
        size_mb=f"{size_mb:.1f}",
        from_classifier=classifier_name is not None,
        classifier_name=classifier_name,
    )


# ------------------------------------------------------------------------------------------------ folder handling


def finish_folder(folder: Path) -> None:
    """Drop `__pycache__` folders loading may have left; make files 0644 and folders 0755 (they are published)."""
    for cache in folder.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(PUBLISHED_DIR_MODE if path.is_dir() else PUBLISHED_FILE_MODE)


def copy_figures(results: dict[str, Any], results_dir: Path, folder: Path) -> dict[str, str]:
    """Copy the evaluation plots named in `results["figures"]` that exist; return `{key: file name}`."""
    copied = {}
    for key in CLASSIFIER_FIGURES:
        name = (results.get("figures") or {}).get(key)
        if name and (results_dir / name).is_file():
            target = f"{key}.png" if Path(name).suffix == ".png" else Path(name).name
            shutil.copyfile(results_dir / name, folder / target)
            copied[key] = target
        elif name:
            print(f"note: figure {key} ({results_dir / name}) is missing; the card leaves it out")
    return copied


# ---------------------------------------------------------------------------------------------------------- exports


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
    set_decision_rule(model.config, results["final_model"]["temperature"], results["final_model"]["threshold"])
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
        finish_folder(staging)
    return output


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
    finish_folder(folder)
    return folder


def export_backbone(
    model_dir: Path, output: Path, pretrain_dir: Path | None = None, pretrain_data: list[str] | None = None,
    dtype: str = DEFAULT_EXPORT_DTYPE, max_mb: float = MAX_WEIGHTS_MB, license_id: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write the Hub-ready encoder folder (AutoModel + plain timm weights) at `output` (atomically)."""
    pretrain_keys = resolve_pretrain_data(pretrain_data, pretrain_dir, init="contrastive pretraining")
    encoder = UsvclForContrastivePretraining.from_pretrained(model_dir, dtype=torch.float32).usvcl.eval()
    from_classifier = UsvclForImageClassification.__name__ in (encoder.config.architectures or [])
    processor = load_processor(model_dir, encoder.config)
    license_default, license_note = choose_license(pretrain_keys or [])
    with atomic_folder(output) as staging:
        size_mb = save_model(encoder, staging, EXPORT_DTYPES[dtype], max_mb)
        processor.save_pretrained(staging)
        exported = write_check(staging, encoder, processor, "backbone", dtype)
        save_timm_backbone(exported, staging, EXPORT_DTYPES[dtype])
        card = backbone_card(
            encoder.config, pretrain_keys or [], find_pretrain_summary(pretrain_dir), license_id or license_default,
            license_note, repo_id or output.name, dtype, size_mb, model_dir.name if from_classifier else None,
        )
        (staging / "README.md").write_text(card)
        finish_folder(staging)
    return output


# -------------------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m training.export",
        description="Export a trained usvcl model as a Hub-ready folder (half-precision weights that load as float32, "
        "code, processor, model card, plots, export_check.json).",
    )
    parser.add_argument("--kind", choices=KINDS, default="classifier", help="what to export (default: classifier)")
    parser.add_argument("--model-dir", type=Path, help="classifier: FINETUNE_OUTPUT/final_model; backbone: a "
                        "UsvclForContrastivePretraining folder (default PRETRAIN_DIR/model)")
    parser.add_argument("--results", type=Path, help="classifier: FINETUNE_OUTPUT/results.json")
    parser.add_argument("--pretrain-dir", type=Path, help="pretraining output folder (its results.json names the data)")
    parser.add_argument("--pretrain-data", nargs="+", choices=sorted(DATASETS),
                        help="data sets contrastive pretraining used (overrides what --pretrain-dir says)")
    parser.add_argument("--output", type=Path, required=True,
                        help="folder to write, e.g. models/usvcl-densenet121-busbra")
    parser.add_argument("--dtype", choices=sorted(EXPORT_DTYPES), default=DEFAULT_EXPORT_DTYPE,
                        help="precision of the stored weights (they load as float32)")
    parser.add_argument("--max-size-mb", type=float, default=MAX_WEIGHTS_MB, help="largest allowed weights file")
    parser.add_argument("--license", dest="license_id", help="override the Hub licence id chosen from the data")
    parser.add_argument("--code-url", help="classifier: link to the usvcl code, shown in the card")
    parser.add_argument("--label-efficiency", type=Path,
                        help="classifier: a label-efficiency plot (PNG) from another run to show in the card")
    parser.add_argument("--repo-id", help="Hub id (ORG/NAME) the card's examples use; default: the folder name")
    parser.add_argument("--card-only", action="store_true",
                        help="classifier: only write README.md of the already exported --output again (no weights)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the export; print where the folder went. Returns the exit code."""
    args = build_parser().parse_args(argv)
    usvcl_hf.register_auto_classes()
    try:
        if args.kind == "classifier":
            if args.card_only:
                if args.results is None:
                    raise ExportError("--card-only needs --results.")
                output = rerender_classifier_card(args.output, args.results, args.pretrain_dir, args.pretrain_data,
                                                  args.license_id, args.code_url, args.repo_id)
                print(f"Wrote the card of {output.resolve()} again (weights untouched): {output / 'README.md'}")
                return 0
            if args.model_dir is None or args.results is None:
                raise ExportError("--kind classifier needs --model-dir and --results.")
            output = export_classifier(args.model_dir, args.results, args.output, args.pretrain_dir,
                                       args.pretrain_data, args.dtype, args.max_size_mb, args.license_id,
                                       args.code_url, args.repo_id, args.label_efficiency)
        elif args.kind == "lesion":  # the lesion segmenter of training.train_lesion (training/export_lesion.py)
            from training.export_lesion import export_lesion

            if args.model_dir is None or args.results is None:
                raise ExportError("--kind lesion needs --model-dir (RUN/final_model) and --results (RUN/results.json).")
            output = export_lesion(args.model_dir, args.results, args.output, args.dtype, args.max_size_mb,
                                   args.license_id, args.repo_id)
        else:
            model_dir = args.model_dir or (args.pretrain_dir / "model" if args.pretrain_dir else None)
            if model_dir is None:
                raise ExportError("--kind backbone needs --pretrain-dir (or --model-dir).")
            output = export_backbone(model_dir, args.output, args.pretrain_dir, args.pretrain_data, args.dtype,
                                     args.max_size_mb, args.license_id, args.repo_id)
    except ExportError as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"Exported the {args.kind} to {output.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
