"""Out-of-distribution warning for a clip or image: is it unlike the images the model was trained on?

Each frame's score is the model's `ood_score` (`UsvclFeatureDensity`: squared Mahalanobis distance per feature of
its pooled features under a Gaussian fitted to BUS-BRA training images). A clip's score is the median of its frames'
scores (a few odd frames do not flag a clip, a clip of odd frames is flagged); above `config.ood_threshold` the
clip gets a warning. The threshold and its false-alarm and detection rates come from `python -m training.export.ood`
(docs/results.md).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

OOD_WARNING = (
    "This input is unlike the breast ultrasound images (BUS-BRA) the model was trained on (out-of-distribution "
    "score {score:.2f}, above the threshold {threshold:.2f}): its answer is unreliable. Is it a breast ultrasound "
    "image?"
)


def clip_ood_score(frame_scores: np.ndarray | None) -> float:
    """Median of the frames' scores `(T,)`; nan without scores (a model without the statistics)."""
    if frame_scores is None or len(frame_scores) == 0:
        return math.nan
    return float(np.median(frame_scores))


def ood_warning(config: Any, score: float) -> str | None:
    """The warning for a clip score above `config.ood_threshold`, else None (also without a threshold)."""
    threshold = getattr(config, "ood_threshold", None)
    if threshold is None or not math.isfinite(score) or score <= threshold:
        return None
    return OOD_WARNING.format(score=score, threshold=threshold)


__all__ = ["OOD_WARNING", "clip_ood_score", "ood_warning"]
