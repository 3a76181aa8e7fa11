"""Evaluation helpers: metrics (local `evaluate` modules), patient bootstrap CIs, threshold, temperature, plots.

Everything here takes plain numpy arrays: `labels (n,)` in {0, 1}, `scores (n,)` = probability of class 1,
`patient_ids (n,)` (any hashable), `logits (n, 2)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import evaluate
import matplotlib
import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

matplotlib.use("Agg")
import matplotlib.pyplot as plt

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
THRESHOLD_METRICS = ("auc", "sensitivity", "specificity", "accuracy")
DEFAULT_BOOTSTRAP = 1000
CI_LEVEL = 0.95
DEFAULT_BINS = 10
LBFGS_STEPS = 100
LBFGS_LR = 0.1
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0  # a one-class or separable validation set drives T to 0 or inf
ROC_GRID_POINTS = 101
FIGURE_DPI = 120
Z_95 = 1.96


@functools.cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load `training/metrics/<name>` (a local evaluate module; no network)."""
    return evaluate.load(str(METRICS_DIR / name))


def positive_probability(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """`softmax(logits / temperature)[:, 1]` for `logits (n, 2)` -> `(n,)`."""
    scaled = torch.as_tensor(np.asarray(logits, dtype=np.float64)) / temperature  # (n, 2)
    return torch.softmax(scaled, dim=1)[:, 1].numpy()


def weighted_threshold_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray, weights: np.ndarray | None = None
) -> dict[str, float]:
    """AUC, sensitivity, specificity, accuracy with optional per-row weights (bootstrap multiplicities).

    `threshold` is one number or one per row (pooled predictions of folds with their own thresholds).
    """
    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    predicted = scores >= np.asarray(threshold, dtype=float)
    positive, negative = labels == 1, labels == 0
    tp, fn = weights[positive & predicted].sum(), weights[positive & ~predicted].sum()
    tn, fp = weights[negative & ~predicted].sum(), weights[negative & predicted].sum()
    has_both = weights[positive].sum() > 0 and weights[negative].sum() > 0
    return {
        "auc": float(roc_auc_score(labels, scores, sample_weight=weights)) if has_both else float("nan"),
        "sensitivity": float(tp / (tp + fn)) if tp + fn > 0 else float("nan"),
        "specificity": float(tn / (tn + fp)) if tn + fp > 0 else float("nan"),
        "accuracy": float((tp + tn) / weights.sum()),
    }


def weighted_ece(
    labels: np.ndarray, scores: np.ndarray, n_bins: int = DEFAULT_BINS, weights: np.ndarray | None = None
) -> float:
    """Binary ECE over `n_bins` equal-width bins of the class-1 probability, with optional row weights."""
    scores = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    labels = np.asarray(labels, dtype=float)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    bins = np.minimum((scores * n_bins).astype(int), n_bins - 1)
    label_sums = np.bincount(bins, weights=weights * labels, minlength=n_bins)
    score_sums = np.bincount(bins, weights=weights * scores, minlength=n_bins)
    return float(np.abs(label_sums - score_sums).sum() / weights.sum())


def point_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    uncalibrated_scores: np.ndarray,
    threshold: float | np.ndarray,
    n_bins: int,
) -> dict[str, float]:
    """Point estimates through the local evaluate modules: threshold metrics + ECE before/after calibration."""
    references = np.asarray(labels, dtype=int).tolist()
    values = load_metric("sensitivity_specificity").compute(
        references=references,
        prediction_scores=np.asarray(scores, float).tolist(),
        threshold=np.asarray(threshold, dtype=float).tolist(),
    )
    ece = load_metric("expected_calibration_error")
    values["ece_before"] = ece.compute(
        references=references, prediction_scores=np.asarray(uncalibrated_scores, float).tolist(), n_bins=n_bins
    )["ece"]
    values["ece_after"] = ece.compute(
        references=references, prediction_scores=np.asarray(scores, float).tolist(), n_bins=n_bins
    )["ece"]
    return {name: float(value) for name, value in values.items()}


def patient_bootstrap_weights(patient_ids: Sequence, n_boot: int, seed: int) -> np.ndarray:
    """`(n_boot, n)` row weights: how often each row's patient is drawn when patients are resampled."""
    _, codes = np.unique(np.asarray(patient_ids).astype(str), return_inverse=True)
    n_patients = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_patients, size=(n_boot, n_patients))  # (n_boot, n_patients) patient draws
    multiplicity = np.stack([np.bincount(row, minlength=n_patients) for row in draws])  # (n_boot, n_patients)
    return multiplicity[:, codes].astype(float)  # (n_boot, n_patients) -> (n_boot, n)


def bootstrap_ci(
    statistic: Callable[[np.ndarray], dict[str, float]],
    patient_ids: Sequence,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> dict[str, tuple[float, float]]:
    """Percentile CIs of each value `statistic(weights)` returns, resampling patients with replacement."""
    samples: dict[str, list[float]] = {}
    for weights in patient_bootstrap_weights(patient_ids, n_boot, seed):
        for name, value in statistic(weights).items():
            samples.setdefault(name, []).append(value)
    tail = (1.0 - level) / 2 * 100
    intervals = {}
    for name, values in samples.items():
        finite = np.asarray(values, dtype=float)
        finite = finite[np.isfinite(finite)]
        intervals[name] = (
            (float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail)))
            if len(finite)
            else (float("nan"), float("nan"))
        )
    return intervals


def metrics_with_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    uncalibrated_scores: np.ndarray,
    patient_ids: Sequence,
    threshold: float | np.ndarray,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    n_bins: int = DEFAULT_BINS,
) -> dict[str, dict[str, float]]:
    """`{metric: {"value", "ci_low", "ci_high"}}` for AUC, sensitivity, specificity, accuracy, ECE before/after."""
    values = point_metrics(labels, scores, uncalibrated_scores, threshold, n_bins)

    def statistic(weights: np.ndarray) -> dict[str, float]:
        result = weighted_threshold_metrics(labels, scores, threshold, weights)
        result["ece_before"] = weighted_ece(labels, uncalibrated_scores, n_bins, weights)
        result["ece_after"] = weighted_ece(labels, scores, n_bins, weights)
        return result

    intervals = bootstrap_ci(statistic, patient_ids, n_boot, seed)
    return {
        name: {"value": values[name], "ci_low": intervals[name][0], "ci_high": intervals[name][1]} for name in values
    }


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1 (0.5 when only one class is present)."""
    labels = np.asarray(labels, dtype=int)
    if len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the NLL of `softmax(logits / T)` (LBFGS on log T), clipped to [0.05, 20]; 1.0 when
    `labels` hold one class. Fit on validation logits only."""
    logits_t = torch.as_tensor(np.asarray(logits, dtype=np.float64))  # (n, K)
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))  # (n,)
    log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=LBFGS_LR, max_iter=LBFGS_STEPS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_t / log_temperature.exp(), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_temperature.detach().exp())
    if not np.isfinite(temperature) or len(np.unique(np.asarray(labels))) < 2:
        return 1.0
    return float(np.clip(temperature, MIN_TEMPERATURE, MAX_TEMPERATURE))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL of `softmax(logits / temperature)`."""
    logits_t = torch.as_tensor(np.asarray(logits, dtype=np.float64)) / temperature  # (n, K)
    return float(torch.nn.functional.cross_entropy(logits_t, torch.as_tensor(np.asarray(labels, dtype=np.int64))))


def roc_band(
    labels: np.ndarray, scores: np.ndarray, patient_ids: Sequence, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FPR grid `(G,)` and the 2.5% / 97.5% TPR envelopes `(G,)` of patient-bootstrap ROC curves."""
    grid = np.linspace(0.0, 1.0, ROC_GRID_POINTS)
    curves = []
    for weights in patient_bootstrap_weights(patient_ids, n_boot, seed):
        if weights[labels == 1].sum() == 0 or weights[labels == 0].sum() == 0:
            continue
        fpr, tpr, _ = roc_curve(labels, scores, sample_weight=weights)
        curves.append(np.interp(grid, fpr, tpr))
    tail = (1.0 - CI_LEVEL) / 2 * 100
    stacked = np.stack(curves) if curves else np.zeros((1, len(grid)))  # (n_boot, G)
    return grid, np.percentile(stacked, tail, axis=0), np.percentile(stacked, 100 - tail, axis=0)


def plot_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray, Sequence]], path: Path, n_boot: int = 200, seed: int = 0
) -> Path:
    """ROC curves `{name: (labels, scores, patient_ids)}` with patient-bootstrap 95% bands, saved to `path`."""
    figure, axes = plt.subplots(figsize=(5, 5))
    for name, (labels, scores, patient_ids) in curves.items():
        labels = np.asarray(labels, dtype=int)
        if len(np.unique(labels)) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        auc = roc_auc_score(labels, scores)
        (line,) = axes.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
        grid, low, high = roc_band(labels, np.asarray(scores), patient_ids, n_boot, seed)
        axes.fill_between(grid, low, high, color=line.get_color(), alpha=0.15)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set(xlabel="False positive rate (1 - specificity)", ylabel="True positive rate (sensitivity)")
    axes.set_title("ROC (shaded: 95% patient-bootstrap band)")
    axes.legend(loc="lower right", fontsize="small")
    return _save(figure, path)


def reliability_bins(labels: np.ndarray, scores: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """Per non-empty bin: mean probability, observed rate, its normal-approximation 95% half-width, count."""
    labels = np.asarray(labels, dtype=float)
    scores = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    bins = np.minimum((scores * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    keep = counts > 0
    mean_score = np.bincount(bins, weights=scores, minlength=n_bins)[keep] / counts[keep]
    observed = np.bincount(bins, weights=labels, minlength=n_bins)[keep] / counts[keep]
    half_width = Z_95 * np.sqrt(observed * (1 - observed) / counts[keep])
    return {"mean_score": mean_score, "observed": observed, "half_width": half_width, "count": counts[keep]}


def plot_reliability(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, n_bins: int = DEFAULT_BINS
) -> Path:
    """Reliability diagram `{name: (labels, scores)}` with 95% binomial error bars, saved to `path`."""
    figure, axes = plt.subplots(figsize=(5, 5))
    for name, (labels, scores) in curves.items():
        stats = reliability_bins(labels, scores, n_bins)
        ece = weighted_ece(labels, scores, n_bins)
        axes.errorbar(
            stats["mean_score"], stats["observed"], yerr=stats["half_width"], marker="o", capsize=3,
            label=f"{name} (ECE {ece:.3f})",
        )
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    axes.set(xlabel="Mean predicted probability of malignancy", ylabel="Observed share malignant", xlim=(0, 1),
             ylim=(0, 1))
    axes.set_title(f"Reliability ({n_bins} bins, 95% error bars)")
    axes.legend(loc="upper left", fontsize="small")
    return _save(figure, path)


def plot_confusion(
    labels: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray, path: Path, class_names: Sequence[str]
) -> Path:
    """Confusion matrix (counts) at `threshold` (one, or one per row), rows = truth, columns = prediction."""
    labels = np.asarray(labels, dtype=int)
    thresholds = np.asarray(threshold, dtype=float)
    predicted = (np.asarray(scores) >= thresholds).astype(int)
    matrix = np.zeros((2, 2), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.imshow(matrix, cmap="Blues")
    for row in range(2):
        for column in range(2):
            axes.text(column, row, str(matrix[row, column]), ha="center", va="center", fontsize=14)
    axes.set_xticks([0, 1], labels=list(class_names))
    axes.set_yticks([0, 1], labels=list(class_names))
    axes.set(xlabel="Predicted", ylabel="True")
    caption = f"threshold {float(thresholds):.3f}" if thresholds.ndim == 0 else "per-fold thresholds"
    axes.set_title(f"Confusion matrix ({caption})")
    return _save(figure, path)


def plot_label_efficiency(summary: list[dict], path: Path) -> Path:
    """AUC against the number of training labels: mean over draws with std error bars, and 95% CI whiskers."""
    sizes = np.array([row["num_labels"] for row in summary])
    means = np.array([row["auc_mean"] for row in summary])
    stds = np.array([row["auc_std"] for row in summary])
    lows = np.array([row["auc_ci_low"] for row in summary])
    highs = np.array([row["auc_ci_high"] for row in summary])
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.errorbar(sizes, means, yerr=stds, marker="o", capsize=4, label="mean ± std over draws")
    axes.fill_between(sizes, lows, highs, alpha=0.15, label="95% CI (patient bootstrap, mean of draws)")
    axes.set_xscale("log")
    axes.set(xlabel="Training labels (images)", ylabel="Test AUC (pooled over folds)")
    axes.set_title("Label efficiency")
    axes.legend(loc="lower right", fontsize="small")
    return _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> Path:
    """Save and close a figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=FIGURE_DPI)
    plt.close(figure)
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def format_interval(metric: dict[str, float], digits: int = 3) -> str:
    """`0.912 (0.880-0.940)` from `{"value", "ci_low", "ci_high"}`."""
    return f"{metric['value']:.{digits}f} ({metric['ci_low']:.{digits}f}-{metric['ci_high']:.{digits}f})"


__all__ = [
    "bootstrap_ci",
    "fit_temperature",
    "format_interval",
    "load_metric",
    "markdown_table",
    "metrics_with_ci",
    "negative_log_likelihood",
    "patient_bootstrap_weights",
    "plot_confusion",
    "plot_label_efficiency",
    "plot_reliability",
    "plot_roc",
    "point_metrics",
    "positive_probability",
    "weighted_ece",
    "weighted_threshold_metrics",
    "youden_threshold",
]
