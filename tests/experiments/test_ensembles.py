"""Calibration fitted again from committed predictions (`experiments.ensembles`): each fold on its own validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from experiments import ensembles
from tests.helpers.predictions import predictions
from training import evaluation


def raw_difference(rows: pd.DataFrame) -> np.ndarray:
    probability = rows["prob_uncalibrated"].to_numpy()
    return np.log(probability / (1 - probability))


def test_recalibrate_fits_each_fold_on_its_validation_rows() -> None:
    """Each fold's (1 / T, b) are an unpenalised logistic regression of its validation labels on the raw logit
    difference; its test rows are scored with them; its threshold is Youden's J on the recalibrated validation."""
    validation, test = predictions(0), predictions(1)
    new_validation, new_test = ensembles.recalibrate(validation, test, "temperature_and_bias")
    for fold in (1, 2):
        rows, on_test = validation[validation["fold"] == fold], test["fold"] == fold
        reference = LogisticRegression(penalty=None, tol=1e-10, max_iter=1000).fit(
            raw_difference(rows)[:, None], rows["label"])
        expected = reference.predict_proba(raw_difference(test[on_test])[:, None])[:, 1]
        np.testing.assert_allclose(new_test.loc[on_test, "prob_malignant"], expected, atol=1e-4)
        recalibrated = new_validation[new_validation["fold"] == fold]
        threshold = evaluation.youden_threshold(recalibrated["label"].to_numpy(), recalibrated["prob_malignant"])
        assert (new_test.loc[on_test, "threshold"] == threshold).all()
        assert (recalibrated["threshold"] == threshold).all()
    assert validation["prob_malignant"].eq(0.5).all()  # the committed tables are not changed
    _, temperature_only = ensembles.recalibrate(validation, test, "temperature")
    assert temperature_only["prob_malignant"].mean() > new_test["prob_malignant"].mean() + 0.05  # the shift stays


def test_crossfit_prefers_the_bias_where_the_scores_are_shifted() -> None:
    """On held-out halves of the validation patients, temperature and bias beat a temperature alone when the logits
    carry a prior shift; the halves are drawn by a seed, so the numbers repeat."""
    validation = predictions(2)
    alone = ensembles.crossfit_calibration(validation, "temperature")
    both = ensembles.crossfit_calibration(validation, "temperature_and_bias")
    assert both["nll"] < alone["nll"] and both["ece"] < alone["ece"]
    assert ensembles.crossfit_calibration(validation, "temperature_and_bias") == both
    with pytest.raises(KeyError):
        ensembles.crossfit_calibration(validation, "isotonic")
