"""The metric module against scikit-learn, bootstrap CIs, paired and multi-seed comparisons against loop
references, temperature scaling and ECE."""

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


def test_metric_module_matches_sklearn_with_ties_and_weights(random_binary) -> None:
    labels, scores, _ = random_binary
    scores = np.round(scores, 1)  # many ties
    rng = np.random.default_rng(1)
    weights = rng.integers(0, 3, size=(4, SAMPLES)).astype(float)  # (B, n) like bootstrap multiplicities
    thresholds = np.where(np.arange(SAMPLES) % 2, THRESHOLD, 0.6)  # one per row, as pooled folds have
    batched = evaluation.binary_metrics(labels, scores, thresholds, weights=weights)
    predicted = (scores >= thresholds).astype(int)
    for b, row in enumerate(weights):
        single = evaluation.binary_metrics(labels, scores, thresholds, weights=row)
        expected = {
            "auc": roc_auc_score(labels, scores, sample_weight=row),
            "sensitivity": recall_score(labels, predicted, pos_label=1, sample_weight=row),
            "specificity": recall_score(labels, predicted, pos_label=0, sample_weight=row),
            "accuracy": accuracy_score(labels, predicted, sample_weight=row),
        }
        for name, value in expected.items():
            assert batched[name][b] == pytest.approx(value, abs=1e-12), name
            assert single[name] == pytest.approx(value, abs=1e-12), name
    assert evaluation.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(evaluation.auc(np.zeros(4, int), np.arange(4.0)))  # one class: NaN


def test_ece_closed_form() -> None:
    # every probability 0.8, 60% positives: one bin, |0.6 - 0.8| = 0.2
    labels = np.array([1, 1, 1, 0, 0])
    scores = np.full(5, 0.8)
    assert evaluation.binary_metrics(labels, scores, n_bins=10)["ece"] == pytest.approx(0.2)
    # two bins: 0.1 with 0/2 positives (gap 0.1), 0.9 with 2/2 positives (gap 0.1) -> 0.1
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.1, 0.9, 0.9])
    assert evaluation.binary_metrics(labels, scores)["ece"] == pytest.approx(0.1)
    # weight 3 on the first row: bin 0.1 gap |0 - 0.1| * 4 = 0.4, bin 0.9 gap 0.2, over 6 -> 0.1
    weighted = evaluation.binary_metrics(labels, scores, weights=np.array([3.0, 1, 1, 1]))
    assert weighted["ece"] == pytest.approx(0.1)


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


def test_calibration_matches_unpenalised_logistic_regression() -> None:
    """Platt scaling of the logit difference: (1 / T, b) are the coefficients of an unpenalised logistic regression
    of the labels on z1 - z0; on overconfident logits with a prior shift (a class-weighted loss) both are needed."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    margin = (2 * labels - 1) * 1.0 + rng.normal(0, 1.5, 500)  # informative but noisy
    logits = np.stack([np.zeros(500), 5.0 * margin + 3.0], axis=1)  # overconfident by ~5x, shifted to class 1
    temperature, bias = evaluation.fit_calibration(logits, labels)
    reference = LogisticRegression(penalty=None, tol=1e-10, max_iter=1000).fit(logits[:, 1:] - logits[:, :1], labels)
    assert 1 / temperature == pytest.approx(reference.coef_[0, 0], rel=1e-4)
    assert bias == pytest.approx(reference.intercept_[0], abs=1e-4)
    assert temperature > 1.5 and bias < -0.2
    expected = 1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0]) / temperature - bias))
    np.testing.assert_allclose(evaluation.positive_probability(logits, temperature, bias), expected, rtol=1e-12)
    nll = evaluation.negative_log_likelihood
    assert nll(logits, labels, temperature, bias) < nll(logits, labels, temperature) < nll(logits, labels)
    assert evaluation.fit_calibration(logits, np.ones(500)) == (1.0, 0.0)  # one class: nothing to fit
    alone, zero = evaluation.fit_calibration(logits, labels, bias=False)  # temperature scaling: NLL's 1-d minimum
    grid = np.exp(np.linspace(np.log(alone) - 0.05, np.log(alone) + 0.05, 101))
    assert zero == 0.0 and alone == pytest.approx(min(grid, key=lambda t: nll(logits, labels, t)), rel=2e-3)


def test_positive_probability_takes_one_calibration_per_row() -> None:
    logits = np.array([[0.0, 1.0], [1.0, -1.0], [0.5, 0.5]])
    temperature, bias = np.array([1.0, 2.0, 0.5]), np.array([0.0, -0.5, 1.0])
    rows = [evaluation.positive_probability(logits[k:k + 1], temperature[k], bias[k])[0] for k in range(3)]
    np.testing.assert_allclose(evaluation.positive_probability(logits, temperature, bias), rows, rtol=1e-12)


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


def loop_mean_auc(labels, scores, patients, n_boot, seed, rng) -> np.ndarray:
    """Reference: per replicate, materialise the drawn patients' rows, then average sklearn AUCs over drawn seeds."""
    unique, codes = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    patient_rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        drawn = patient_rng.integers(0, len(unique), size=len(unique))
        rows = np.concatenate([np.flatnonzero(codes == patient) for patient in drawn])
        aucs = [roc_auc_score(labels[rows], row[rows]) for row in scores]
        means.append(np.mean([aucs[k] for k in rng.integers(0, len(scores), size=len(scores))]))
    return np.array(means)


@pytest.fixture
def seeded_arms(random_binary) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, patients and two arms of 3 and 2 seeds (B better than A by construction)."""
    labels, _, patients = random_binary
    rng = np.random.default_rng(5)
    arm_a = np.clip(0.2 * labels + rng.random((3, SAMPLES)), 0, 1.2)  # (3, n)
    arm_b = np.clip(0.6 * labels + rng.random((2, SAMPLES)), 0, 1.6)  # (2, n)
    return labels, patients, arm_a, arm_b


def test_paired_difference_matches_a_loop_reference(seeded_arms) -> None:
    labels, patients, arm_a, arm_b = seeded_arms
    n_boot, seed = 60, 3
    result = evaluation.paired_auc_difference(labels, arm_a, arm_b, patients, n_boot=n_boot, seed=seed)
    rng = np.random.default_rng([seed, evaluation.SEED_STREAM])  # seed draws: arm A's replicates first, then B's
    draws_a = rng.integers(0, 3, size=(n_boot, 3))
    draws_b = rng.integers(0, 2, size=(n_boot, 2))
    unique, codes = np.unique(patients.astype(str), return_inverse=True)
    patient_rng = np.random.default_rng(seed)
    differences = []
    for b in range(n_boot):  # the same patients for both arms in replicate b
        drawn = patient_rng.integers(0, len(unique), size=len(unique))
        rows = np.concatenate([np.flatnonzero(codes == patient) for patient in drawn])
        mean_a = np.mean([roc_auc_score(labels[rows], arm_a[k][rows]) for k in draws_a[b]])
        mean_b = np.mean([roc_auc_score(labels[rows], arm_b[k][rows]) for k in draws_b[b]])
        differences.append(mean_a - mean_b)
    low, high = np.percentile(differences, [2.5, 97.5])
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high), abs=1e-12)
    per_seed_a = [roc_auc_score(labels, row) for row in arm_a]
    per_seed_b = [roc_auc_score(labels, row) for row in arm_b]
    assert result["difference"] == pytest.approx(np.mean(per_seed_a) - np.mean(per_seed_b), abs=1e-12)
    assert result["auc_a"]["sd"] == pytest.approx(np.std(per_seed_a, ddof=1))
    assert result["ci_high"] < 0  # B is better by construction
    assert result["share_not_above_zero"] == pytest.approx(np.mean(np.array(differences) <= 0))


def test_paired_difference_of_an_arm_with_itself_is_zero(seeded_arms) -> None:
    labels, patients, arm_a, _ = seeded_arms
    result = evaluation.paired_auc_difference(labels, arm_a[:1], arm_a[0], patients, n_boot=50, seed=0)
    assert result["difference"] == 0 and result["ci_low"] == 0 and result["ci_high"] == 0
    with pytest.raises(ValueError, match="same 200 images"):
        evaluation.paired_auc_difference(labels, arm_a, arm_a[:, :10], patients)


def test_mean_auc_ci_over_seeds_matches_a_loop_reference(seeded_arms) -> None:
    labels, patients, arm_a, _ = seeded_arms
    result = evaluation.mean_auc_ci(labels, arm_a, patients, n_boot=40, seed=2)
    reference = loop_mean_auc(labels, arm_a, patients, 40, 2, np.random.default_rng([2, evaluation.SEED_STREAM]))
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(tuple(np.percentile(reference, [2.5, 97.5])),
                                                                   abs=1e-12)
    assert result["value"] == pytest.approx(np.mean([roc_auc_score(labels, row) for row in arm_a]))
    assert result["ci_low"] <= result["value"] <= result["ci_high"]
    assert result["spread"]["n"] == 3


def test_seed_spread_uses_ddof_1() -> None:
    spread = evaluation.seed_spread([0.80, 0.82, 0.84])
    assert spread["mean"] == pytest.approx(0.82) and spread["sd"] == pytest.approx(0.02)
    assert np.isnan(evaluation.seed_spread([0.8])["sd"])
