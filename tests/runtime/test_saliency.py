"""Grad-CAM heatmaps: shape, range, alignment with the original frame, model left unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.demo_fixtures import save_tiny_classifier
from usvcl_hf.image_processing_usvcl import resize_to_square
from usvcl_hf.runtime.clip_prediction import load_model
from usvcl_hf.runtime.saliency import gradcam_heatmap, overlay_heatmap, resolve_target_class, square_to_frame

HEIGHT, WIDTH = 40, 90


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_model(save_tiny_classifier(tmp_path_factory.mktemp("tiny_model")))


def ramp(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A horizontal ramp in [0, 1] (any misalignment shows up as an error)."""
    return np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))


@pytest.mark.parametrize("shape", [(HEIGHT, WIDTH), (WIDTH, HEIGHT)])
def test_square_to_frame_undoes_the_letterbox(shape):
    frame = ramp(*shape) if shape[1] > shape[0] else ramp(*shape[::-1]).T.copy()
    square = resize_to_square(frame, 64, "pad")
    back = square_to_frame(square, *shape, "pad")
    assert back.shape == shape
    assert np.abs(back - frame)[2:-2, 2:-2].max() < 0.05


def test_square_to_frame_undoes_the_centre_crop():
    frame = ramp()
    back = square_to_frame(resize_to_square(frame, 64, "crop"), HEIGHT, WIDTH, "crop")
    inside = slice(WIDTH // 2 - HEIGHT // 2 + 2, WIDTH // 2 + HEIGHT // 2 - 2)
    assert np.abs(back - frame)[2:-2, inside].max() < 0.05
    assert back[:, :5].max() == 0.0  # cut by the crop: no saliency there


@pytest.mark.parametrize("target", ["malignant", 0, None])
def test_heatmap_matches_the_frame(loaded, target):
    model, processor = loaded
    frame = (np.random.default_rng(0).random((HEIGHT, WIDTH)) * 255).astype(np.uint8)
    heatmap = gradcam_heatmap(model, processor, frame, target)
    assert heatmap.shape == (HEIGHT, WIDTH) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert all(parameter.requires_grad for parameter in model.parameters())
    assert not model.training
    assert all(parameter.grad is None for parameter in model.parameters())


def test_heatmap_works_inside_inference_mode(loaded):
    import torch

    model, processor = loaded
    with torch.inference_mode():
        heatmap = gradcam_heatmap(model, processor, np.full((32, 32), 100, np.uint8), "malignant")
    assert heatmap.shape == (32, 32)


def test_overlay_is_rgb_uint8_of_the_frame_size():
    frame = (ramp() * 255).astype(np.uint8)
    overlay = overlay_heatmap(frame, np.ones((10, 10), np.float32))  # resized to the frame
    assert overlay.shape == (HEIGHT, WIDTH, 3) and overlay.dtype == np.uint8
    plain = overlay_heatmap(frame, np.zeros((HEIGHT, WIDTH), np.float32), alpha=0.0)
    np.testing.assert_array_equal(plain[..., 0], frame)


def test_target_class_names_and_bounds(loaded):
    model, _ = loaded
    assert resolve_target_class(model, "malignant") == 1
    assert resolve_target_class(model, 0) == 0
    with pytest.raises(ValueError, match="Unknown class"):
        resolve_target_class(model, "cyst")
    with pytest.raises(ValueError, match="outside"):
        resolve_target_class(model, 5)


def test_saliency_eval_takes_class_names_from_the_store_and_records_its_summary(tmp_path) -> None:
    import json

    import datasets

    from training.finetune import saliency_eval

    store = datasets.Dataset.from_dict({"label": [0, 1, 1]},
                                       features=datasets.Features({"label": datasets.ClassLabel(names=["a", "b"])}))
    assert saliency_eval.class_names(store) == ["a", "b"]
    assert saliency_eval.class_names(datasets.Dataset.from_dict({"label": [1, 0]})) == ["0", "1"]
    assert saliency_eval.record_in_results(tmp_path, {"groups": {}}) is None  # no results.json: nothing written
    (tmp_path / "results.json").write_text(json.dumps({"pooled": {"auc": 0.8}}))
    summary = {"groups": {"all": {"n": 3}}, "folds": [1], "images": [{"image_id": "x"}]}
    assert saliency_eval.record_in_results(tmp_path, summary) == tmp_path / "results.json"
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["pooled"] == {"auc": 0.8} and results["saliency"] == {"groups": {"all": {"n": 3}}, "folds": [1]}
