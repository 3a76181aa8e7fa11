"""Local evaluate modules against scikit-learn, bootstrap CIs, temperature scaling and ECE."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

from training import evaluation

SAMPLES = 200
THRESHOLD = 0.4


@pytest.fixture
def random_binary() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, scores correlated with them, and patient ids (two images per patient)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, SAMPLES)
    scores = np.clip(0.3 * labels + rng.random(SAMPLES) * 0.7, 0, 1)
    patients = np.repeat(np.arange(SAMPLES // 2), 2)
    return labels, scores, patients


def test_roc_auc_module_matches_sklearn(random_binary) -> None:
    labels, scores, _ = random_binary
    result = evaluation.load_metric("roc_auc").compute(references=labels, prediction_scores=scores)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))


def test_threshold_module_matches_sklearn(random_binary) -> None:
    labels, scores, _ = random_binary
    result = evaluation.load_metric("sensitivity_specificity").compute(
        references=labels, prediction_scores=scores, threshold=THRESHOLD
    )
    predicted = (scores >= THRESHOLD).astype(int)
    assert result["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["sensitivity"] == pytest.approx(recall_score(labels, predicted, pos_label=1))
    assert result["specificity"] == pytest.approx(recall_score(labels, predicted, pos_label=0))
    assert result["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    fast = evaluation.weighted_threshold_metrics(labels, scores, THRESHOLD)
    assert fast == pytest.approx(result)


def test_ece_closed_form() -> None:
    # every probability 0.8, 60% positives: one bin, |0.6 - 0.8| = 0.2
    labels = np.array([1, 1, 1, 0, 0])
    scores = np.full(5, 0.8)
    module = evaluation.load_metric("expected_calibration_error")
    assert module.compute(references=labels, prediction_scores=scores, n_bins=10)["ece"] == pytest.approx(0.2)
    # two bins: 0.1 with 0/2 positives (gap 0.1), 0.9 with 2/2 positives (gap 0.1) -> 0.1
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.1, 0.9, 0.9])
    assert module.compute(references=labels, prediction_scores=scores)["ece"] == pytest.approx(0.1)
    assert evaluation.weighted_ece(labels, scores) == pytest.approx(0.1)


def test_bootstrap_ci_contains_point_estimate(random_binary) -> None:
    labels, scores, patients = random_binary
    metrics = evaluation.metrics_with_ci(labels, scores, scores, patients, THRESHOLD, n_boot=200, seed=1)
    for name, metric in metrics.items():
        assert metric["ci_low"] <= metric["value"] <= metric["ci_high"], name
    again = evaluation.metrics_with_ci(labels, scores, scores, patients, THRESHOLD, n_boot=200, seed=1)
    assert again == metrics  # seeded


def test_bootstrap_resamples_whole_patients() -> None:
    weights = evaluation.patient_bootstrap_weights(["a", "a", "b", "c", "c"], n_boot=20, seed=0)
    assert weights.shape == (20, 5)
    assert np.all(weights[:, 0] == weights[:, 1]) and np.all(weights[:, 3] == weights[:, 4])
    assert np.all(weights[:, [0, 2, 3]].sum(axis=1) == 3)  # three patients drawn each time


def test_temperature_scaling_lowers_nll() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    margin = (2 * labels - 1) * 1.0 + rng.normal(0, 1.5, 500)  # informative but noisy
    logits = np.stack([np.zeros(500), 5.0 * margin], axis=1)  # overconfident by ~5x
    temperature = evaluation.fit_temperature(logits, labels)
    assert temperature > 1.5
    assert evaluation.negative_log_likelihood(logits, labels, temperature) < evaluation.negative_log_likelihood(
        logits, labels
    )


def test_youden_threshold_separates_perfectly() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    threshold = evaluation.youden_threshold(labels, scores)
    assert 0.3 < threshold <= 0.7


def test_plots_and_table(tmp_path, random_binary) -> None:
    labels, scores, patients = random_binary
    assert evaluation.plot_roc({"x": (labels, scores, patients)}, tmp_path / "roc.png", n_boot=20).stat().st_size
    assert evaluation.plot_reliability({"x": (labels, scores)}, tmp_path / "rel.png").stat().st_size
    assert evaluation.plot_confusion(labels, scores, 0.5, tmp_path / "cm.png", ("b", "m")).stat().st_size
    table = evaluation.markdown_table(["a", "b"], [[1, 2]])
    assert table.splitlines()[1] == "|---|---|"
