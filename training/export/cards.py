"""Model cards rendered from model_card.md / backbone_card.md with the numbers and facts of results.json."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from training import imagenet_init
from training.export.base import PAPER_ARXIV, ExportError
from training.export.licences import DATASETS, dataset_entries
from training.export.runs import ECE_METRICS, METRICS, NON_PRETRAINED_INITS
from training.export.weights import TIMM_WEIGHTS_FILE
from training.provenance import run_device
from usvcl_hf import UsvclConfig
from usvcl_hf.image_processing_usvcl import MIN_IMAGE_SIDE

REPO_ROOT = Path(__file__).resolve().parents[2]
SALIENCY_METRICS = ("pointing_game", "energy_inside", "chance_level")
CLASSIFIER_CARD_TEMPLATE = REPO_ROOT / "model_card.md"

BACKBONE_CARD_TEMPLATE = REPO_ROOT / "backbone_card.md"

MODEL_INDEX_METRIC_TYPES = {"auc": "roc_auc", "sensitivity": "recall", "specificity": "specificity",
                            "accuracy": "accuracy", "ece_after": "ece"}



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
        if name != "ece_after" or not shipped_ece_differs(results)
    ] + shipped_ece_result(results, model_name, split)


def shipped_ece_differs(results: dict[str, Any]) -> bool:
    """True when the folds' `ece_after` is not the ECE of the calibration the final model ships."""
    return bool(shipped_calibration(results)["temperature_only"])


def shipped_ece_result(results: dict[str, Any], model_name: str, split: str) -> list[EvalResult]:
    """The model-index ECE of the shipped calibration when the folds' `ece_after` is not it (no CI recorded)."""
    calibration = shipped_calibration(results)
    if not calibration["temperature_only"]:
        return []
    try:
        value = float(calibration["ece"])
    except ValueError:
        return []
    return [EvalResult(task_type="image-classification", task_name="Breast tumour classification (benign / malignant)",
                       dataset_type="bus-bra", dataset_name="BUS-BRA", dataset_split=split, metric_type="ece",
                       metric_name=f"ECE with the calibration shipped ({calibration['method']}; pooled)",
                       metric_value=value)]


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


def saliency_facts(results: dict[str, Any]) -> dict[str, str] | None:
    """The card's saliency sentence values from `results["saliency"]` (written by `training.finetune.saliency_eval`)."""
    saliency = results.get("saliency")
    if not isinstance(saliency, dict) or "all" not in saliency.get("groups", {}):
        return None
    overall = saliency["groups"]["all"]
    return {"n": str(overall["n"]), "folds": ", ".join(str(fold) for fold in saliency.get("folds", [])),
            **{name: metric_text(overall[name]) for name in SALIENCY_METRICS}}


def render_card(template: Path, card_data: ModelCardData, **values: Any) -> str:
    """Render a Jinja model-card template (`{{ card_data }}` is the YAML header) and check it parses back."""
    if not template.is_file():
        raise ExportError(f"Model card template {template} is missing.")
    card = ModelCard.from_template(card_data, template_path=str(template), **values)
    text = str(card)
    ModelCard(text)  # raises on a broken YAML header
    return text


def shared_values(
    config: UsvclConfig, pretrain_data: list[str] | None, pretrain_summary: dict[str, Any], license_id: str,
    license_note: str, model_name: str, dtype: str, size_mb: float,
) -> dict[str, Any]:
    """The template values both cards use: names, licence, model config, pretraining data and settings, weights."""
    return dict(
        model_name=model_name,
        paper_arxiv=PAPER_ARXIV,
        license_id=license_id,
        license_note=license_note,
        config=config,
        backbone=config.backbone,
        pretrain_datasets=dataset_entries(pretrain_data or [], "contrastive pretraining"),
        pretrain_hyperparameters=scalar_items(pretrain_summary),
        contrastive_hyperparameters=contrastive_hyperparameters(config),
        weights_dtype=dtype,
        size_mb=f"{size_mb:.1f}",  # MiB: BYTES_PER_MB is 1024 * 1024
    )


def contrastive_tags(pretrain_data: list[str] | None) -> list[str]:
    """The Hub tags of contrastive pretraining, for a classifier that had it (`pretrain_data`: its data sets)."""
    return ["contrastive-learning", "self-supervised-learning"] if pretrain_data else []


def imagenet_init_text(backbone: str, init: Any, pretrain_summary: dict[str, Any]) -> str | None:
    """The card's sentence on an offline ImageNet initialisation (fine-tuning `init` "imagenet", or a pretraining
    that started from ImageNet), or None."""
    started = str(init).lower() == "imagenet" or bool(pretrain_summary.get("init_from_imagenet"))
    if not started:
        return None
    if imagenet_init.has_offline_weights(backbone):
        return imagenet_init.imagenet_description(backbone)
    return f"timm's ImageNet weights of `{backbone}` (see the timm model card for their licence)"


def companion_id(model_name: str, recorded_id: str) -> str:
    """A companion's Hub id under the owner of `model_name` (`ORG/NAME` -> `ORG/<companion name>`)."""
    owner, _, name = model_name.rpartition("/")
    companion = recorded_id.rpartition("/")[2]
    return f"{owner}/{companion}" if owner and name else companion


def two_view_named(two_view: dict[str, Any] | None, model_name: str) -> dict[str, Any] | None:
    """results.json's two-view record with its partner and lesion model named under the owner of `model_name`."""
    if not two_view:
        return two_view
    named = dict(two_view)
    for key in ("partner", "lesion_model"):
        if named.get(key):
            named[key] = companion_id(model_name, named[key])
    return named


def fold_list(folds: list[int]) -> str:
    """`folds 4 and 5`, `folds 1-5`, `fold 2`."""
    folds = sorted(folds)
    if len(folds) == 1:
        return f"fold {folds[0]}"
    if len(folds) > 2 and folds == list(range(folds[0], folds[-1] + 1)):
        return f"folds {folds[0]}–{folds[-1]}"
    return f"folds {', '.join(map(str, folds[:-1]))} and {folds[-1]}"


def final_training(results: dict[str, Any]) -> dict[str, str] | None:
    """The epochs the final model trained and the folds whose median best epoch set them: the folds of the run that
    wrote the final model (`parts`), else every fold; `final_model.epochs` when recorded. None when unknown."""
    final = results["final_model"]
    with_epochs = [fold for fold in results["folds"] if "best_epoch" in fold]
    parent = str(Path(final.get("path", "")).parent)
    own = next((part["folds"] for part in results.get("parts") or [] if part.get("folder") == parent), None)
    chosen = [fold for fold in with_epochs if own is None or fold["fold"] in own]
    recorded = final.get("epochs")
    if not chosen or (recorded is not None and statistics.median(f["best_epoch"] for f in chosen) != recorded):
        chosen = with_epochs
    if not chosen:
        return None if recorded is None else {"epochs": str(recorded), "folds": ""}
    epochs = recorded if recorded is not None else statistics.median(f["best_epoch"] for f in chosen)
    return {"epochs": f"{epochs:g}", "folds": fold_list([fold["fold"] for fold in chosen])}


def shipped_calibration(results: dict[str, Any]) -> dict[str, str]:
    """The calibration the final model ships (temperature, or temperature and bias) and the pooled test ECE of that
    method: the folds' own `ece_after` when they were calibrated the same way, else the model's own row of the
    two-view table (`<view>, recalibrated`), which recalibrated every fold with the shipped method."""
    with_bias = bool(results["final_model"].get("calibration_bias"))
    method = "temperature and bias" if with_bias else "temperature"
    if not with_bias or all("calibration_bias" in fold for fold in results["folds"]):
        return {"method": method, "ece": metric_text(results["pooled"]["ece_after"]), "temperature_only": ""}
    view = (results.get("two_view") or {}).get("view")
    rows = [row for row in (results.get("two_view") or {}).get("rows", [])
            if row.get("candidate") == f"{view}, recalibrated" and row.get("ece")]
    return {"method": method, "ece": rows[0]["ece"] if rows else "not measured",
            "temperature_only": metric_text(results["pooled"]["ece_after"])}


def choice_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The choices the run made itself (`selection`) and those made among runs (`choices`)."""
    return [*results.get("selection", []), *results.get("choices", [])]


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
        tags=["medical-imaging", "ultrasound", "breast-ultrasound", "breast-cancer", *contrastive_tags(pretrain_data),
              "timm", "usvcl", "custom_code"],
        datasets=[DATASETS[key].name for key in used],
        metrics=["roc_auc", "recall", "specificity", "accuracy", "ece"],
        eval_results=model_index(results, model_name),
    )
    return render_card(
        CLASSIFIER_CARD_TEMPLATE,
        card_data,
        **shared_values(config, pretrain_data, pretrain_summary, license_id, license_note, model_name, dtype, size_mb),
        min_image_side=MIN_IMAGE_SIDE,
        pretrained=pretrain_data is not None,
        finetune_datasets=dataset_entries(["bus_bra"], "fine-tuning and evaluation"),
        finetune_hyperparameters=scalar_items(results.get("config", {})),
        selection=choice_rows(results),
        final_training=final_training(results),
        calibration=shipped_calibration(results),
        n_folds=len(results["folds"]),
        pooled={name: metric_text(results["pooled"][name]) for name in (*METRICS, *ECE_METRICS)},
        mean_std={name: mean_std_text(results["mean_std"].get(name)) for name in (*METRICS, *ECE_METRICS)},
        folds=fold_rows(results),
        threshold=f"{results['final_model']['threshold']:.3f}",
        temperature=f"{results['final_model']['temperature']:.3f}",
        calibration_bias=f"{results['final_model'].get('calibration_bias', 0.0):+.3f}",
        recalibration=(results["final_model"].get("recalibrated") or {}).get("summary"),
        init=results.get("init", "unknown"),
        imagenet_init=imagenet_init_text(config.backbone, results.get("init"), pretrain_summary),
        command=results.get("command", ""),
        commit=results.get("commit", ""),
        machine=results.get("machine", ""),
        on_gpu=run_device(results)["gpu"] is not None,
        saliency=saliency_facts(results),
        two_view=two_view_named(results.get("two_view"), model_name),
        pretrain_steps=pretrain_steps,
        finetune_epochs=(results.get("config") or {}).get("num_epochs"),
        wall_time_h=f"{float(results.get('wall_time_s', 0.0)) / 3600:.1f}",
        figures=figures,
        code_url=code_url,
    )


def backbone_card(
    config: UsvclConfig, pretrain_data: list[str], pretrain_summary: dict[str, Any], license_id: str,
    license_note: str, model_name: str, dtype: str, size_mb: float, classifier_name: str | None = None,
    init: str | None = None,
) -> str:
    """The backbone's README.md from `backbone_card.md`; `classifier_name`: the classifier it was taken from, whose
    fine-tuning `init` (e.g. "imagenet") the card names."""
    pretrained = bool(pretrain_summary) or init is None or str(init).lower() not in NON_PRETRAINED_INITS
    card_data = ModelCardData(
        model_name=model_name,
        license=license_id,
        library_name="transformers",
        pipeline_tag="image-feature-extraction",
        tags=["medical-imaging", "ultrasound", *(["contrastive-learning", "self-supervised-learning"] if pretrained
                                                  else []), "timm", "usvcl", "feature-extraction", "custom_code"],
        datasets=[DATASETS[key].name for key in pretrain_data],
    )
    return render_card(
        BACKBONE_CARD_TEMPLATE,
        card_data,
        **shared_values(config, pretrain_data, pretrain_summary, license_id, license_note, model_name, dtype, size_mb),
        timm_file=TIMM_WEIGHTS_FILE,
        imagenet_init=imagenet_init_text(config.backbone, init, pretrain_summary),
        pretrained=pretrained,
        from_classifier=classifier_name is not None,
        classifier_name=classifier_name,
    )


__all__ = ["backbone_card", "classifier_card"]
