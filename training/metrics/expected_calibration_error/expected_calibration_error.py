"""Expected calibration error of binary probabilities (equal-width bins), as a local `evaluate` module.

Plain numpy binning (the same bins as the reliability diagrams in `training/evaluation.py`).
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "ECE = sum over equal-width bins of the probability of class 1 of (bin share) * |observed rate of class 1 - "
    "mean predicted probability| (the reliability diagram of the positive class)."
)
_KWARGS_DESCRIPTION = """
Args:
    references (`list[int]`): true labels, 0 or 1.
    prediction_scores (`list[float]`): probability of class 1 in [0, 1].
    n_bins (`int`, defaults to 10): equal-width bins on [0, 1].
Returns:
    ece (`float`) in [0, 1].
"""
_CITATION = "Guo et al., On Calibration of Modern Neural Networks, ICML 2017."
DEFAULT_BINS = 10


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExpectedCalibrationError(evaluate.Metric):
    """Binary ECE over equal-width bins."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"prediction_scores": datasets.Value("float64"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, prediction_scores, references, n_bins: int = DEFAULT_BINS) -> dict:
        scores = np.clip(np.asarray(prediction_scores, dtype=float), 0.0, 1.0)
        labels = np.asarray(references, dtype=int)
        bins = np.minimum((scores * n_bins).astype(int), n_bins - 1)  # bin b holds [b/n, (b+1)/n), 1.0 in the last
        label_sums = np.bincount(bins, weights=labels, minlength=n_bins)
        score_sums = np.bincount(bins, weights=scores, minlength=n_bins)
        gaps = np.abs(label_sums - score_sums)  # per bin: count * |observed rate - mean probability|
        return {"ece": float(gaps.sum() / max(len(scores), 1))}
