"""Clip aggregation functions on hand-worked arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from usvcl_hf.configuration_usvcl import CLIP_AGGREGATIONS
from usvcl_hf.runtime.aggregation import (
    AGGREGATION_FUNCTIONS,
    aggregate_probabilities,
    logit,
    max_probability,
    mean_logit,
    mean_probability,
    median_probability,
    sigmoid,
    top_k_mean,
)

FRAMES = np.array([0.1, 0.2, 0.9, 0.4])


def test_every_configured_name_has_a_function():
    assert set(AGGREGATION_FUNCTIONS) == set(CLIP_AGGREGATIONS)


def test_mean_max_median():
    assert mean_probability(FRAMES) == pytest.approx(0.4)  # 1.6 / 4
    assert max_probability(FRAMES) == pytest.approx(0.9)
    assert median_probability(FRAMES) == pytest.approx(0.3)  # (0.2 + 0.4) / 2


def test_mean_logit_is_the_geometric_mean_of_the_odds():
    # odds 1/9, 1/4, 9, 2/3 -> product 1/6 -> geometric mean (1/6)^(1/4)
    odds = (1 / 6) ** 0.25
    assert mean_logit(FRAMES) == pytest.approx(odds / (1 + odds))
    assert mean_logit(np.array([0.2, 0.8])) == pytest.approx(0.5)


def test_mean_logit_stays_finite_for_saturated_frames():
    assert mean_logit(np.array([0.0, 1.0])) == pytest.approx(0.5)
    assert mean_logit(np.array([1.0, 1.0])) == pytest.approx(1.0, abs=1e-6)


def test_top_k_mean():
    assert top_k_mean(FRAMES, top_k=3) == pytest.approx((0.9 + 0.4 + 0.2) / 3)
    assert top_k_mean(FRAMES, top_k=1) == pytest.approx(0.9)
    assert top_k_mean(FRAMES, top_k=10) == pytest.approx(0.4)  # fewer frames than k: all of them


@pytest.mark.parametrize("method", CLIP_AGGREGATIONS)
def test_one_frame_gives_its_own_probability(method):
    assert aggregate_probabilities(np.array([0.73]), method) == pytest.approx(0.73)


@pytest.mark.parametrize("method", CLIP_AGGREGATIONS)
def test_dispatch_matches_the_function_and_stays_in_range(method):
    value = aggregate_probabilities(FRAMES, method, top_k=2)
    assert value == pytest.approx(AGGREGATION_FUNCTIONS[method](FRAMES, top_k=2))
    assert 0.0 <= value <= 1.0


def test_logit_and_sigmoid_are_inverse():
    values = np.array([0.01, 0.3, 0.5, 0.99])
    np.testing.assert_allclose(sigmoid(logit(values)), values, rtol=1e-9)
    assert logit(np.array([0.5]))[0] == 0.0
    assert math.isfinite(logit(np.array([1.0]))[0])


@pytest.mark.parametrize(
    "bad", [np.array([]), np.zeros((2, 2)), np.array([0.2, 1.5]), np.array([-0.1]), np.array([np.nan])]
)
def test_bad_probabilities_raise(bad):
    with pytest.raises(ValueError, match="Frame probabilities"):
        mean_probability(bad)


def test_unknown_method_and_bad_k_raise():
    with pytest.raises(ValueError, match="one of"):
        aggregate_probabilities(FRAMES, "vote")
    with pytest.raises(ValueError, match="top_k"):
        top_k_mean(FRAMES, top_k=0)
