"""One decision rule at every door: `pipeline("image-classification")`, `predict_clip` and the demo give one label.

The calibrated decision is `P(malignant) >= decision_threshold`; an exported model folds the threshold into its
logits (`threshold_in_logits`), so the pipeline's top label (argmax of the logits) is that decision.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import pipeline

import app
from tests.helpers.paths import REPO_ROOT
from usvcl_hf import UsvclConfig, UsvclForImageClassification
from usvcl_hf.runtime.clip_prediction import load_model, predict_clip

BUNDLED_MODEL = REPO_ROOT / app.DEFAULT_MODEL  # the default model, whichever ships
NEAR_THRESHOLD = sorted((REPO_ROOT / "tests" / "fixtures" / "bus_bra").glob("*.png"))
TINY = dict(backbone="resnet18", image_size=32, embedding_dim=8, projection_hidden_dim=0, classifier_hidden_dim=0)


def test_argmax_of_logits_is_the_calibrated_decision() -> None:
    torch.manual_seed(0)
    for threshold in (0.1, 0.37, 0.5, 0.8):
        model = UsvclForImageClassification(UsvclConfig(**TINY, decision_threshold=threshold, threshold_in_logits=True))
        with torch.no_grad():
            output = model.eval()(torch.randn(64, 1, 32, 32) * 3)
        malignancy = output.calibrated_logits.softmax(-1)[:, 1]
        assert torch.equal(output.logits.argmax(-1), (malignancy >= threshold).long())
        offset = output.logits - output.calibrated_logits  # (B, 2): 0 on benign, log((1 - t) / t) on malignant
        assert torch.allclose(offset[:, 1], torch.full((64,), math.log((1 - threshold) / threshold)), atol=1e-5)
        assert torch.all(offset[:, 0] == 0)


def test_models_without_the_flag_keep_their_logits() -> None:
    config = UsvclConfig(**TINY, decision_threshold=0.3)  # as loaded from a config.json written before the flag
    assert not config.threshold_in_logits and config.decision_offset() == [0.0, 0.0]
    with torch.no_grad():
        output = UsvclForImageClassification(config).eval()(torch.randn(2, 1, 32, 32))
    assert torch.equal(output.logits, output.calibrated_logits)


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_a_threshold_without_finite_log_odds_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold_in_logits"):
        UsvclConfig(**TINY, decision_threshold=threshold, threshold_in_logits=True)


def test_loss_uses_the_calibrated_logits() -> None:
    torch.manual_seed(0)
    model = UsvclForImageClassification(UsvclConfig(**TINY, decision_threshold=0.2, threshold_in_logits=True)).eval()
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        output = model(torch.randn(2, 1, 32, 32), labels=labels)
    expected = torch.nn.functional.cross_entropy(output.calibrated_logits, labels)
    assert torch.allclose(output.loss, expected)


def door_labels(model, processor, path: Path) -> dict[str, str]:
    """The label each door gives one image: pipeline (top label), `predict_clip`, and the demo's label box."""
    classify = pipeline("image-classification", model=model, image_processor=processor)
    pipeline_label = classify(str(path))[0]["label"]
    prediction = predict_clip(model, processor, [path])
    shown = app.run_analysis(model, processor, "bundled", [str(path)], 1, model.config.clip_aggregation, True)[0]
    demo_decision = shown.label.split(":")[0]  # "malignant: P(malignant) 0.33 >= threshold 0.31"
    return {"pipeline": pipeline_label, "predict_clip": prediction.label, "demo": demo_decision}


@pytest.fixture(scope="module")
def bundled():
    """The bundled default model and its processor."""
    return load_model(BUNDLED_MODEL)


@pytest.mark.slow
@pytest.mark.skipif(not BUNDLED_MODEL.is_dir(), reason="the default model is not exported")
def test_three_doors_agree_near_the_threshold(bundled) -> None:
    model, processor = bundled
    assert model.config.threshold_in_logits, "the bundled model predates the decision rule: training.export.refresh"
    malignancy = {path.name: predict_clip(model, processor, [path]).malignancy for path in NEAR_THRESHOLD}
    original = model.config.decision_threshold
    median = float(sorted(malignancy.values())[len(malignancy) // 2])
    try:
        # the shipped threshold, then one between the fixtures' own probabilities: both sides of it are near it
        for threshold in (original, median - 1e-4):
            model.config.decision_threshold = threshold
            for path in NEAR_THRESHOLD:
                labels = door_labels(model, processor, path)
                expected = "malignant" if malignancy[path.name] >= threshold else "benign"
                assert set(labels.values()) == {expected}, (path.name, threshold, malignancy[path.name], labels)
        decisions = {value >= median - 1e-4 for value in malignancy.values()}
        assert decisions == {True, False}, "the moved threshold must have fixtures on both sides"
    finally:
        model.config.decision_threshold = original
