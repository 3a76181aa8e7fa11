"""A site calibration: each view's temperature and bias, and the decision threshold, fitted by training's rules
(`training.evaluation.fit_calibration`: lowest NLL; `training.evaluation.youden_threshold`: Youden's J on the
calibrated probabilities), and the answer's probability under any calibration, aggregated as `predict_clip` does."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from training import evaluation
from training.calibrate_site.scoring import ItemScores, SiteModels
from usvcl_hf.lesion_crop import two_view_threshold
from usvcl_hf.runtime.aggregation import aggregate_probabilities, sigmoid
from usvcl_hf.runtime.clip_prediction import WHOLE_VIEW


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What the answer's calibration consists of."""

    views: dict[str, tuple[float, float]]  # view -> (temperature, bias) of its classifier
    threshold: float  # on the answer's probability (two views: the mean of the views' probabilities)
    view_thresholds: dict[str, float]  # each classifier's `decision_threshold`; two views: their mean is `threshold`


@dataclasses.dataclass(frozen=True)
class Aggregation:
    """How the frames of an item become its answer (the whole-image model's `clip_aggregation`, `clip_top_k`)."""

    method: str
    top_k: int


def model_calibration(models: SiteModels) -> Calibration:
    """The calibration the models carry (what the demo answers with before site calibration)."""
    views = {name: (float(model.config.calibration_temperature), float(model.config.calibration_bias))
             for name, model in models.view_models.items()}
    thresholds = {name: float(model.config.decision_threshold) for name, model in models.view_models.items()}
    threshold = thresholds[WHOLE_VIEW] if len(views) == 1 else two_view_threshold(models.model, models.crop_model)
    return Calibration(views, threshold, thresholds)


def model_aggregation(models: SiteModels) -> Aggregation:
    """The whole-image model's clip aggregation (what `predict_clip` uses by default)."""
    return Aggregation(models.model.config.clip_aggregation, int(models.model.config.clip_top_k))


def answer_probability(scores: ItemScores, calibration: Calibration, aggregation: Aggregation) -> float:
    """P(malignant) of an item: each lesion frame's views calibrated and averaged, aggregated over the lesion frames
    (`predict_clip`'s arithmetic); NaN when the item has no lesion frame ("no lesion")."""
    if not scores.answered:
        return float("nan")
    frames = np.mean([sigmoid(values[scores.lesion_frames] / calibration.views[name][0] + calibration.views[name][1])
                      for name, values in scores.views.items()], axis=0)  # (views, T_lesion) -> (T_lesion,)
    return aggregate_probabilities(frames, aggregation.method, top_k=aggregation.top_k)


def answer_probabilities(scores: Sequence[ItemScores], calibration: Calibration,
                         aggregation: Aggregation) -> np.ndarray:
    """`(n,)` P(malignant) of each item (NaN: "no lesion")."""
    return np.array([answer_probability(item, calibration, aggregation) for item in scores], dtype=np.float64)


def item_logits(scores: ItemScores, view: str) -> np.ndarray:
    """`(2,)` class scores of an item in one view for fitting: 0 and the mean uncalibrated logit difference over
    its lesion frames (a still: the image's own)."""
    return np.array([0.0, float(np.mean(scores.views[view][scores.lesion_frames]))])


def view_thresholds(threshold: float, whole_alone: float, views: Sequence[str]) -> dict[str, float]:
    """Each classifier's threshold: one view, `threshold`; two views, the whole-image model's own threshold
    (`whole_alone`, for the one-view doors) and the crop model's chosen so that their mean is `threshold`, or
    both `threshold` when that would leave (0, 1)."""
    if len(views) == 1:
        return {WHOLE_VIEW: threshold}
    other = 2 * threshold - whole_alone
    if not 0.0 < other < 1.0:
        return dict.fromkeys(views, threshold)
    return {name: whole_alone if name == WHOLE_VIEW else other for name in views}


def fit_site_calibration(scores: Sequence[ItemScores], labels: np.ndarray, aggregation: Aggregation) -> Calibration:
    """Temperature and bias of each view (lowest NLL on the items' view scores), then the threshold (Youden's J on
    the answers' calibrated probabilities), on the answered items of `scores`; `labels (n,)` 0/1."""
    answered = [index for index, item in enumerate(scores) if item.answered]
    items, labels = [scores[index] for index in answered], np.asarray(labels)[answered]
    names = list(items[0].views)
    views = {name: evaluation.fit_calibration(np.stack([item_logits(item, name) for item in items]), labels)
             for name in names}
    calibration = Calibration(views, 0.5, {})
    threshold = evaluation.youden_threshold(labels, answer_probabilities(items, calibration, aggregation))
    whole_alone = Calibration({WHOLE_VIEW: views[WHOLE_VIEW]}, threshold, {})
    whole_threshold = evaluation.youden_threshold(labels, answer_probabilities(
        [ItemScores({WHOLE_VIEW: item.views[WHOLE_VIEW]}, item.lesion_frames) for item in items], whole_alone,
        aggregation))
    return Calibration(views, threshold, view_thresholds(threshold, whole_threshold, names))
