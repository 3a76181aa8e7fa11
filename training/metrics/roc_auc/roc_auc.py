"""Area under the ROC curve of binary scores (scikit-learn's `roc_auc_score`), as a local `evaluate` module."""

import datasets
import evaluate
from sklearn.metrics import roc_auc_score

_DESCRIPTION = "Area under the receiver operating characteristic curve for binary labels and scores."
_KWARGS_DESCRIPTION = """
Args:
    references (`list[int]`): true labels, 0 or 1.
    prediction_scores (`list[float]`): score of the positive class (higher = more likely positive).
Returns:
    roc_auc (`float`): in [0, 1]; NaN when only one class is present.
"""
_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RocAuc(evaluate.Metric):
    """Binary ROC AUC."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"prediction_scores": datasets.Value("float64"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, prediction_scores, references) -> dict:
        if len(set(references)) < 2:
            return {"roc_auc": float("nan")}
        return {"roc_auc": float(roc_auc_score(references, prediction_scores))}
