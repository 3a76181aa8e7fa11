"""Evaluation helpers: metrics (one local `evaluate` module, `training/metrics/binary_classification`, for point
estimates and bootstrap replicates alike), patient-bootstrap CIs, paired and multi-seed comparisons, threshold,
temperature, plots.

Everything here takes plain numpy arrays: `labels (n,)` in {0, 1}, `scores (n,)` = probability of class 1,
`patient_ids (n,)` (any hashable), `logits (n, 2)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import evaluate
import matplotlib
import numpy as np
import torch
from sklearn.metrics import roc_curve

matplotlib.use("Agg")
import matplotlib.pyplot as plt

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
METRIC_MODULE = "binary_classification"
SEED_STREAM = 1  # the seed draws' generator: default_rng([seed, SEED_STREAM]), apart from the patient draws
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


def positive_probability(
    logits: np.ndarray, temperature: float | np.ndarray = 1.0, bias: float | np.ndarray = 0.0
) -> np.ndarray:
    """`softmax(logits / T + [0, b])[:, 1] = sigmoid((z1 - z0) / T + b)` for `logits (n, 2)` -> `(n,)`; `T` and `b`
    are numbers or one per row `(n,)` (pooled folds, each with its own calibration)."""
    logits = np.asarray(logits, dtype=np.float64)
    temperature = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (len(logits),))[:, None]  # (n, 1)
    offset = np.zeros_like(logits)  # (n, 2)
    offset[:, 1] = bias
    return torch.softmax(torch.as_tensor(logits / temperature + offset), dim=1)[:, 1].numpy()


def binary_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float | np.ndarray = 0.5,
    n_bins: int = DEFAULT_BINS,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """AUC, sensitivity, specificity, accuracy and ECE through the local `binary_classification` evaluate module.

    `threshold` is one number or one per row; `weights` (optional) is `(n,)` or `(B, n)`; with `(B, n)` every value
    is an array `(B,)`, one per weighting (a patient bootstrap in one call).
    """
    return load_metric(METRIC_MODULE).compute(
        references=np.asarray(labels, dtype=int).tolist(),
        prediction_scores=np.asarray(scores, dtype=float).tolist(),
        threshold=np.asarray(threshold, dtype=float).tolist(),
        n_bins=n_bins,
        sample_weight=weights,
    )


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (NaN when one class is present)."""
    return float(binary_metrics(labels, scores)["auc"])


def all_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    uncalibrated_scores: np.ndarray,
    threshold: float | np.ndarray,
    n_bins: int,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """The reported metrics: threshold metrics and ECE of the calibrated scores, ECE of the uncalibrated ones."""
    calibrated = binary_metrics(labels, scores, threshold, n_bins, weights)
    values = {name: calibrated[name] for name in THRESHOLD_METRICS}
    values["ece_before"] = binary_metrics(labels, uncalibrated_scores, threshold, n_bins, weights)["ece"]
    values["ece_after"] = calibrated["ece"]
    return values


def patient_bootstrap_weights(patient_ids: Sequence, n_boot: int, seed: int) -> np.ndarray:
    """`(n_boot, n)` row weights: how often each row's patient is drawn when patients are resampled."""
    _, codes = np.unique(np.asarray(patient_ids).astype(str), return_inverse=True)
    n_patients = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_patients, size=(n_boot, n_patients))  # (n_boot, n_patients) patient draws
    multiplicity = np.stack([np.bincount(row, minlength=n_patients) for row in draws])  # (n_boot, n_patients)
    return multiplicity[:, codes].astype(float)  # (n_boot, n_patients) -> (n_boot, n)


def percentile_interval(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile interval of the finite values of `samples (B,)`; NaNs when none is finite."""
    finite = np.asarray(samples, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def bootstrap_ci(
    statistic: Callable[[np.ndarray], dict[str, float]],
    patient_ids: Sequence,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> dict[str, tuple[float, float]]:
    """Percentile CIs of each value `statistic(weights (n,))` returns, resampling patients with replacement (for
    statistics other than the classification metrics, e.g. the saliency scores)."""
    samples: dict[str, list[float]] = {}
    for weights in patient_bootstrap_weights(patient_ids, n_boot, seed):
        for name, value in statistic(weights).items():
            samples.setdefault(name, []).append(value)
    return {name: percentile_interval(np.asarray(values), level) for name, values in samples.items()}


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
    """`{metric: {"value", "ci_low", "ci_high"}}` for AUC, sensitivity, specificity, accuracy, ECE before/after.

    Values with unit weights, CIs from the same metric code with the `(n_boot, n)` patient-bootstrap weights.
    """
    values = all_metrics(labels, scores, uncalibrated_scores, threshold, n_bins)
    replicates = all_metrics(labels, scores, uncalibrated_scores, threshold, n_bins,
                             patient_bootstrap_weights(patient_ids, n_boot, seed))  # {name: (n_boot,)}
    result = {}
    for name, value in values.items():
        low, high = percentile_interval(replicates[name])
        result[name] = {"value": float(value), "ci_low": low, "ci_high": high}
    return result


def auc_replicates(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`(S, B)` AUCs of `scores (S, n)` (one row per seed or draw) under `weights (B, n)`."""
    return np.stack([binary_metrics(labels, row, weights=weights)["auc"] for row in np.atleast_2d(scores)])


def mean_over_drawn_seeds(replicates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`(B,)`: for each bootstrap replicate b, the mean of `replicates (S, B)` over S seeds drawn with replacement."""
    n_seeds, n_boot = replicates.shape
    draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # (B, S) seed indices per replicate
    return np.take_along_axis(replicates.T, draws, axis=1).mean(axis=1)  # (B, S) -> (B,)


def seed_spread(values: Sequence[float]) -> dict[str, float]:
    """Mean and standard deviation (ddof 1; NaN for one value) of per-seed results."""
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
            "n": len(values)}


def mean_auc_ci(
    labels: np.ndarray, scores: np.ndarray, patient_ids: Sequence, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
    level: float = CI_LEVEL,
) -> dict[str, Any]:
    """Mean AUC over S seeds (or label draws) `scores (S, n)` of the same n test rows, with a CI that carries both
    the seed and the sample variance: each replicate resamples patients (weights w_b) and, independently, S seeds
    with replacement (sigma_b), and takes mean_k AUC(scores[sigma_bk], w_b). Returns the mean, its CI, the
    per-seed AUCs and their spread."""
    per_seed = auc_replicates(labels, scores, np.ones((1, len(labels))))[:, 0]  # (S,)
    replicates = auc_replicates(labels, scores, patient_bootstrap_weights(patient_ids, n_boot, seed))  # (S, B)
    low, high = percentile_interval(mean_over_drawn_seeds(replicates, np.random.default_rng([seed, SEED_STREAM])),
                                    level)
    return {"value": float(per_seed.mean()), "ci_low": low, "ci_high": high, "per_seed": per_seed.tolist(),
            "spread": seed_spread(per_seed)}


def paired_auc_difference(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    patient_ids: Sequence,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> dict[str, Any]:
    """AUC(A) - AUC(B) on the same n test images, paired by patient, with seeds: `scores_a (S_a, n)`,
    `scores_b (S_b, n)` (one row per training seed; `(n,)` for one seed), rows aligned image by image.

    Point estimate: D = mean_s AUC(a_s) - mean_t AUC(b_t). Replicate b draws the test patients with replacement
    once, giving weights w_b `(n,)` shared by both arms (the pairing: each image's two predictions stay together),
    and draws S_a seeds of A and S_b seeds of B with replacement (sigma_b, tau_b; independent, since the arms'
    seeds are different trainings):
        D_b = mean_k AUC(a_{sigma_bk}; w_b) - mean_k AUC(b_{tau_bk}; w_b).
    The CI is the percentile interval of D_b, so it carries the sample (patient) variance and the seed variance;
    with one seed per arm it is the plain paired patient bootstrap. Also returned: the share of replicates <= 0
    (`share_not_above_zero`), and the per-seed AUCs and spread of each arm.
    """
    labels = np.asarray(labels, dtype=int)
    scores_a, scores_b = np.atleast_2d(scores_a), np.atleast_2d(scores_b)  # (S_a, n), (S_b, n)
    if scores_a.shape[1] != len(labels) or scores_b.shape[1] != len(labels):
        raise ValueError(f"paired comparison needs both arms on the same {len(labels)} images; got "
                         f"{scores_a.shape[1]} and {scores_b.shape[1]}.")
    weights = patient_bootstrap_weights(patient_ids, n_boot, seed)  # (B, n), shared by both arms
    rng = np.random.default_rng([seed, SEED_STREAM])
    replicates_a = mean_over_drawn_seeds(auc_replicates(labels, scores_a, weights), rng)  # (B,)
    replicates_b = mean_over_drawn_seeds(auc_replicates(labels, scores_b, weights), rng)  # (B,)
    differences = replicates_a - replicates_b  # (B,)
    unit = np.ones((1, len(labels)))
    per_seed_a, per_seed_b = auc_replicates(labels, scores_a, unit)[:, 0], auc_replicates(labels, scores_b, unit)[:, 0]
    low, high = percentile_interval(differences, level)
    return {
        "difference": float(per_seed_a.mean() - per_seed_b.mean()), "ci_low": low, "ci_high": high,
        "share_not_above_zero": float(np.mean(differences[np.isfinite(differences)] <= 0)),
        "auc_a": seed_spread(per_seed_a), "auc_b": seed_spread(per_seed_b), "n_boot": n_boot,
    }


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1 (0.5 when only one class is present)."""
    labels = np.asarray(labels, dtype=int)
    if len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def fit_calibration(logits: np.ndarray, labels: np.ndarray, bias: bool = True) -> tuple[float, float]:
    """Temperature `T` and bias `b` minimising the NLL of `P(1) = sigmoid((z1 - z0) / T + b)` for `logits (n, 2)`
    (Platt scaling of the logit difference; LBFGS on log T and b). The bias removes a prior shift (a class-weighted
    loss moves every logit difference by about log(w1 / w0)), which a temperature alone cannot. `bias=False` fits T
    alone (temperature scaling, b = 0). T is clipped to [0.05, 20]; (1.0, 0.0) when `labels` hold one class. Fit on
    validation logits only."""
    logits = np.asarray(logits, dtype=np.float64)
    difference = torch.as_tensor(logits[:, 1] - logits[:, 0])  # (n,)
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.float64))  # (n,)
    log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
    offset = torch.zeros((), dtype=torch.float64, requires_grad=bias)
    optimizer = torch.optim.LBFGS([log_temperature, offset] if bias else [log_temperature], lr=LBFGS_LR,
                                  max_iter=LBFGS_STEPS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        scaled = difference / log_temperature.exp() + offset  # (n,)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(scaled, labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature, shift = float(log_temperature.detach().exp()), float(offset.detach())
    if not (np.isfinite(temperature) and np.isfinite(shift)) or len(np.unique(np.asarray(labels))) < 2:
        return 1.0, 0.0
    return float(np.clip(temperature, MIN_TEMPERATURE, MAX_TEMPERATURE)), shift


def negative_log_likelihood(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bias: float = 0.0
) -> float:
    """Mean NLL of `positive_probability(logits, temperature, bias)` for binary `labels`."""
    return binary_nll(labels, positive_probability(logits, temperature, bias))


def binary_nll(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean negative log-likelihood of binary `labels` under probabilities `scores` (clipped to [1e-12, 1 - 1e-12])."""
    probability = np.clip(np.asarray(scores, dtype=np.float64), 1e-12, 1 - 1e-12)  # (n,)
    labels = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(labels * np.log(probability) + (1 - labels) * np.log(1 - probability)))


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
        (line,) = axes.plot(fpr, tpr, label=f"{name} (AUC {auc(labels, scores):.3f})")
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
        ece = binary_metrics(labels, scores, n_bins=n_bins)["ece"]
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
    """AUC against the number of training labels: mean over draws with std error bars, and the 95% CI band of
    the mean over draws (`mean_auc_ci`)."""
    sizes = np.array([row["num_labels"] for row in summary])
    means = np.array([row["auc_mean"] for row in summary])
    stds = np.array([row["auc_std"] for row in summary])
    lows = np.array([row["auc_ci_low"] for row in summary])
    highs = np.array([row["auc_ci_high"] for row in summary])
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.errorbar(sizes, means, yerr=stds, marker="o", capsize=4, label="mean ± std over draws")
    axes.fill_between(sizes, lows, highs, alpha=0.15, label="95% CI of the mean (draws and patients resampled)")
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
    "all_metrics",
    "auc",
    "auc_replicates",
    "binary_metrics",
    "binary_nll",
    "bootstrap_ci",
    "fit_calibration",
    "format_interval",
    "load_metric",
    "markdown_table",
    "mean_auc_ci",
    "mean_over_drawn_seeds",
    "metrics_with_ci",
    "negative_log_likelihood",
    "paired_auc_difference",
    "patient_bootstrap_weights",
    "percentile_interval",
    "plot_confusion",
    "plot_label_efficiency",
    "plot_reliability",
    "plot_roc",
    "positive_probability",
    "seed_spread",
    "youden_threshold",
]
