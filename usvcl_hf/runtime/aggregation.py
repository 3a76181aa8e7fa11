"""Clip-level aggregation of per-frame malignancy probabilities (pure numpy).

Every name in `CLIP_AGGREGATIONS` has one function here; `aggregate_probabilities` dispatches by name.
All functions take a 1-D array of frame probabilities in [0, 1] and return one clip probability in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..configuration_usvcl import CLIP_AGGREGATIONS

# Probabilities are clipped to [EPSILON, 1 - EPSILON] before taking logits, so saturated frames stay finite.
EPSILON = 1e-7
DEFAULT_TOP_K = 3


def _as_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Check and return `probabilities` as a non-empty 1-D float64 array in [0, 1]."""
    values = np.asarray(probabilities, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"Frame probabilities must be a non-empty 1-D array, got shape {values.shape}.")
    if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0:
        raise ValueError("Frame probabilities must be finite and lie in [0, 1].")
    return values


def logit(probabilities: np.ndarray) -> np.ndarray:
    """`log(p / (1 - p))` of probabilities clipped to [EPSILON, 1 - EPSILON]."""
    clipped = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1.0 - EPSILON)
    return np.log(clipped) - np.log1p(-clipped)


def sigmoid(logits: np.ndarray | float) -> np.ndarray | float:
    """`1 / (1 + exp(-x))`, the inverse of `logit`."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def mean_probability(probabilities: np.ndarray, top_k: int = DEFAULT_TOP_K) -> float:
    """Arithmetic mean of the frame probabilities."""
    return float(_as_probabilities(probabilities).mean())


def max_probability(probabilities: np.ndarray, top_k: int = DEFAULT_TOP_K) -> float:
    """Probability of the most suspicious frame."""
    return float(_as_probabilities(probabilities).max())


def median_probability(probabilities: np.ndarray, top_k: int = DEFAULT_TOP_K) -> float:
    """Median of the frame probabilities (robust to a few outlying frames)."""
    return float(np.median(_as_probabilities(probabilities)))


def mean_logit(probabilities: np.ndarray, top_k: int = DEFAULT_TOP_K) -> float:
    """Sigmoid of the mean frame logit (a geometric mean of the odds).

    For two classes the malignancy logit `log(p / (1 - p))` equals the softmax logit difference, so this is the
    same as averaging the model's (temperature-scaled) logit differences.
    """
    return float(sigmoid(logit(_as_probabilities(probabilities)).mean()))


def top_k_mean(probabilities: np.ndarray, top_k: int = DEFAULT_TOP_K) -> float:
    """Mean of the `top_k` highest frame probabilities (all frames when the clip has fewer)."""
    values = _as_probabilities(probabilities)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}.")
    return float(np.sort(values)[-min(top_k, values.size) :].mean())


AGGREGATION_FUNCTIONS: dict[str, Callable[..., float]] = {
    "mean_probability": mean_probability,
    "max_probability": max_probability,
    "median_probability": median_probability,
    "mean_logit": mean_logit,
    "top_k_mean": top_k_mean,
}
assert set(AGGREGATION_FUNCTIONS) == set(CLIP_AGGREGATIONS), "every CLIP_AGGREGATIONS name needs a function"


def aggregate_probabilities(probabilities: np.ndarray, method: str, top_k: int = DEFAULT_TOP_K) -> float:
    """One clip probability from `(T,)` frame probabilities by the named method (one of `CLIP_AGGREGATIONS`)."""
    if method not in AGGREGATION_FUNCTIONS:
        raise ValueError(f"Clip aggregation must be one of {list(CLIP_AGGREGATIONS)}, got {method!r}.")
    return AGGREGATION_FUNCTIONS[method](probabilities, top_k=top_k)


__all__ = [
    "AGGREGATION_FUNCTIONS",
    "CLIP_AGGREGATIONS",
    "aggregate_probabilities",
    "logit",
    "max_probability",
    "mean_logit",
    "mean_probability",
    "median_probability",
    "sigmoid",
    "top_k_mean",
]
