"""Binary classification metrics with optional row weights, as a local `evaluate` module: the project's one
implementation of ROC AUC, sensitivity, specificity, accuracy and expected calibration error.

Point estimates use unit weights; a patient bootstrap passes its `(B, n)` matrix of resampling multiplicities as
`sample_weight` and gets `B` replicates of every metric from one call (`training/evaluation.py`).
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
For labels y_i in {0, 1}, scores s_i (probability of class 1) and weights w_i >= 0 (one row of `sample_weight`):

- AUC = sum_{i: y=1} sum_{j: y=0} w_i w_j ([s_i > s_j] + 1/2 [s_i = s_j]) / (W_1 W_0), W_c = sum_{i: y=c} w_i
  (the Mann-Whitney form; equal to the trapezoidal area under the weighted ROC curve);
- with predictions p_i = [s_i >= t_i]: sensitivity = sum w y p / sum w y, specificity = sum w (1-y)(1-p) / sum w (1-y),
  accuracy = sum w [p = y] / sum w;
- ECE = sum_b |sum_{i in b} w_i (y_i - s_i)| / sum_i w_i over `n_bins` equal-width bins of s (1.0 in the last bin).

A rate whose denominator is 0 (e.g. AUC with one class present) is NaN.
"""
_KWARGS_DESCRIPTION = """
Args:
    references (`list[int]`): true labels, 0 or 1; `n` of them.
    prediction_scores (`list[float]`): probability of class 1, `n` of them.
    threshold (`float` or `list[float]`, defaults to 0.5): scores at or above it are called positive; a list gives
        one threshold per row (pooled predictions of folds with their own thresholds).
    n_bins (`int`, defaults to 10): equal-width ECE bins on [0, 1].
    sample_weight (array `(n,)` or `(B, n)`, optional): row weights; `(B, n)` gives `B` weighted evaluations.
Returns:
    auc, sensitivity, specificity, accuracy, ece: `float`, or arrays `(B,)` when `sample_weight` is `(B, n)`.
"""
_CITATION = (
    "Hanley & McNeil, The meaning and use of the area under a ROC curve, Radiology 1982; "
    "Guo et al., On Calibration of Modern Neural Networks, ICML 2017."
)
DEFAULT_THRESHOLD = 0.5
DEFAULT_BINS = 10


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise numerator / denominator, NaN where the denominator is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC for `weights (B, n)` -> `(B,)`: rows sorted once, ties grouped, half credit for ties."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # (g,) first row of each tie group
    positive = labels[order] == 1
    group_pos = np.add.reduceat(weights[:, order] * positive, starts, axis=1)  # (B, g) positive weight per score
    group_neg = np.add.reduceat(weights[:, order] * ~positive, starts, axis=1)  # (B, g) negative weight per score
    below = np.cumsum(group_neg, axis=1) - group_neg  # (B, g) negative weight strictly below each score
    wins = (group_pos * (below + 0.5 * group_neg)).sum(axis=1)  # (B,)
    return _ratio(wins, group_pos.sum(axis=1) * group_neg.sum(axis=1))


def weighted_ece(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray, n_bins: int) -> np.ndarray:
    """Binary ECE over equal-width bins for `weights (B, n)` -> `(B,)`."""
    clipped = np.clip(scores, 0.0, 1.0)
    bins = np.minimum((clipped * n_bins).astype(int), n_bins - 1)  # bin b holds [b/n, (b+1)/n), 1.0 in the last
    membership = np.eye(n_bins)[bins]  # (n, n_bins) one-hot bin of each row
    gaps = (weights * (labels - clipped)) @ membership  # (B, n_bins) per bin: sum of w (y - s)
    return _ratio(np.abs(gaps).sum(axis=1), weights.sum(axis=1))


def weighted_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: np.ndarray, weights: np.ndarray, n_bins: int
) -> dict[str, np.ndarray]:
    """Every metric for `weights (B, n)`: `{name: (B,)}`."""
    predicted = scores >= threshold  # (n,)
    positive = labels == 1
    hits = weights @ np.stack([positive & predicted, positive, ~positive & ~predicted, ~positive,
                               predicted == positive], axis=1).astype(float)  # (B, n) @ (n, 5) -> (B, 5)
    return {
        "auc": weighted_auc(labels, scores, weights),
        "sensitivity": _ratio(hits[:, 0], hits[:, 1]),
        "specificity": _ratio(hits[:, 2], hits[:, 3]),
        "accuracy": _ratio(hits[:, 4], weights.sum(axis=1)),
        "ece": weighted_ece(labels, scores, weights, n_bins),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BinaryClassification(evaluate.Metric):
    """AUC, sensitivity, specificity, accuracy and ECE of binary scores, optionally for many weightings at once."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"prediction_scores": datasets.Value("float64"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, prediction_scores, references, threshold=DEFAULT_THRESHOLD, n_bins=DEFAULT_BINS,
                 sample_weight=None) -> dict:
        labels = np.asarray(references, dtype=int)
        scores = np.asarray(prediction_scores, dtype=float)
        weights = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        thresholds = np.broadcast_to(np.asarray(threshold, dtype=float), labels.shape)
        values = weighted_metrics(labels, scores, thresholds, np.atleast_2d(weights), int(n_bins))
        if weights.ndim == 1:
            return {name: float(value[0]) for name, value in values.items()}
        return values
