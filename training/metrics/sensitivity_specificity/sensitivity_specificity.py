"""Threshold metrics of binary scores: sensitivity, specificity, accuracy (plus AUC), as a local `evaluate` module."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

_DESCRIPTION = "Sensitivity (recall of class 1), specificity (recall of class 0), accuracy and ROC AUC."
_KWARGS_DESCRIPTION = """
Args:
    references (`list[int]`): true labels, 0 or 1.
    prediction_scores (`list[float]`): probability of class 1.
    threshold (`float` or `list[float]`, defaults to 0.5): scores at or above it are called positive (a list gives
        one threshold per reference, e.g. per-fold thresholds of pooled predictions).
Returns:
    auc, sensitivity, specificity, accuracy (`float`); a rate whose denominator is 0 is NaN.
"""
_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011."
DEFAULT_THRESHOLD = 0.5


def _ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator, NaN when the denominator is 0."""
    return float(numerator / denominator) if denominator else float("nan")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SensitivitySpecificity(evaluate.Metric):
    """AUC, sensitivity, specificity and accuracy at a threshold."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"prediction_scores": datasets.Value("float64"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, prediction_scores, references, threshold=DEFAULT_THRESHOLD) -> dict:
        labels = np.asarray(references, dtype=int)
        predicted = (np.asarray(prediction_scores, dtype=float) >= np.asarray(threshold, dtype=float)).astype(int)
        tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
        auc = float(roc_auc_score(labels, prediction_scores)) if len(set(labels.tolist())) == 2 else float("nan")
        return {
            "auc": auc,
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "accuracy": float(accuracy_score(labels, predicted)),
        }
