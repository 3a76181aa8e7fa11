"""predict_clip with a lesion model: per-frame lesion probabilities, lesion frames only, and "no lesion"."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.helpers.demo_fixtures import save_tiny_classifier, save_tiny_lesion_model, write_clip
from usvcl_hf.runtime.aggregation import aggregate_probabilities
from usvcl_hf.runtime.clip_prediction import NO_LESION_LABEL, load_model, predict_clip
from usvcl_hf.runtime.lesion import frame_lesion_probabilities, load_lesion_model

STRIDE = 4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(classifier, processor, lesion model, lesion processor), tiny and random, loaded from saved folders."""
    root = tmp_path_factory.mktemp("models")
    return (*load_model(save_tiny_classifier(root / "classifier")),
            *load_lesion_model(save_tiny_lesion_model(root / "lesion")))


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "sweep.mp4")


def predict(models, clip_path, threshold: float, **kwargs):
    model, processor, lesion_model, lesion_processor = models
    lesion_model.config.lesion_threshold = threshold
    return predict_clip(model, processor, clip_path, frame_stride=STRIDE, lesion_model=lesion_model,
                        lesion_processor=lesion_processor, **kwargs)


def test_answer_aggregates_over_lesion_frames_only(models, clip_path):
    everything = predict(models, clip_path, 0.0)
    lesion = everything.lesion_probabilities
    assert lesion.shape == (everything.num_frames,) and everything.lesion_frames.all()
    np.testing.assert_allclose(lesion, frame_lesion_probabilities(models[2], models[3], everything.frames))
    threshold = float(np.median(lesion))
    result = predict(models, clip_path, threshold, clip_aggregation="mean_probability")
    kept = lesion >= threshold
    assert 0 < kept.sum() < len(kept)
    np.testing.assert_array_equal(result.lesion_frames, kept)
    np.testing.assert_allclose(result.frame_probabilities, everything.frame_probabilities)  # every frame scored
    expected = aggregate_probabilities(result.frame_probabilities[kept], "mean_probability")
    assert result.malignancy == pytest.approx(expected)
    assert result.label in ("benign", "malignant") and result.lesion_threshold == threshold
    assert kept[result.most_suspicious_frame]
    assert result.frame_probabilities[result.most_suspicious_frame] == result.frame_probabilities[kept].max()


def test_no_lesion_frame_means_no_lesion(models, clip_path):
    result = predict(models, clip_path, 1.0)
    assert result.label == NO_LESION_LABEL == "no lesion"
    assert result.probabilities == {} and math.isnan(result.malignancy)
    assert not result.lesion_frames.any()
    assert result.most_suspicious_frame == int(np.argmax(result.lesion_probabilities))


def test_without_a_lesion_model_every_frame_counts(models, clip_path):
    model, processor, _, _ = models
    result = predict_clip(model, processor, clip_path, frame_stride=STRIDE)
    assert result.lesion_probabilities is None and result.lesion_frames.all()
    assert math.isnan(result.lesion_threshold) and result.label in ("benign", "malignant")
