"""predict_clip on a tiny random classifier: clips, images, stills, caps and bad files."""

from __future__ import annotations

import math

import numpy as np
import PIL.Image
import pytest
import torch
from pydicom import examples as dicom_examples

from tests.helpers.demo_fixtures import save_tiny_classifier, write_clip, write_png
from training import synthetic
from usvcl_hf.configuration_usvcl import CLIP_AGGREGATIONS
from usvcl_hf.runtime.aggregation import aggregate_probabilities
from usvcl_hf.runtime.clip_prediction import ClipTooLongError, load_model, predict_clip
from usvcl_hf.runtime.input_checks import CHECKED_SIZES
from usvcl_hf.runtime.video import ClipReadError

STRIDE = 4


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """(model, processor) loaded back from a saved tiny folder through the Auto classes."""
    return load_model(save_tiny_classifier(tmp_path_factory.mktemp("tiny_model")))


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "sweep.mp4")


def assert_consistent(result, frame_count):
    assert set(result.probabilities) == {"benign", "malignant"}
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert result.label in ("benign", "malignant")
    assert result.frame_probabilities.shape == (frame_count,)
    assert len(result.frames) == len(result.frame_indices) == len(result.times_s) == frame_count
    assert np.all((result.frame_probabilities >= 0) & (result.frame_probabilities <= 1))
    assert result.frame_probabilities[result.most_suspicious_frame] == result.frame_probabilities.max()


def test_load_model_gives_eval_model_and_processor(loaded):
    model, processor = loaded
    assert not model.training
    assert processor.image_size == 64


def test_load_model_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nothing")


def test_clip_keeps_every_stride_frame(loaded, clip_path):
    model, processor = loaded
    result = predict_clip(model, processor, clip_path, frame_stride=STRIDE)
    expected = np.arange(0, synthetic.FRAME_COUNT, STRIDE)
    assert_consistent(result, len(expected))
    np.testing.assert_array_equal(result.frame_indices, expected)
    assert result.fps == pytest.approx(synthetic.FPS)
    np.testing.assert_allclose(result.times_s, expected / synthetic.FPS)
    assert result.frame_stride == STRIDE
    assert result.aggregation == model.config.clip_aggregation
    assert result.elapsed_s > 0


def test_frame_probabilities_match_a_plain_forward_pass(loaded, clip_path):
    model, processor = loaded
    result = predict_clip(model, processor, clip_path, frame_stride=STRIDE, batch_size=3)
    with torch.no_grad():
        pixel_values = processor(result.frames, return_tensors="pt", **CHECKED_SIZES)["pixel_values"]  # cropped frames
        logits = model(pixel_values=pixel_values).logits
    np.testing.assert_allclose(result.frame_probabilities, torch.softmax(logits, -1)[:, 1].numpy(), atol=1e-5)


@pytest.mark.parametrize("method", CLIP_AGGREGATIONS)
def test_aggregation_override(loaded, clip_path, method):
    model, processor = loaded
    result = predict_clip(model, processor, clip_path, frame_stride=8, clip_aggregation=method)
    expected = aggregate_probabilities(result.frame_probabilities, method, top_k=model.config.clip_top_k)
    assert result.aggregation == method
    assert result.probabilities["malignant"] == pytest.approx(expected)


def test_decision_threshold_sets_the_label(loaded, clip_path):
    model, processor = loaded
    original = model.config.decision_threshold
    try:
        model.config.decision_threshold = 0.0
        assert predict_clip(model, processor, clip_path, frame_stride=8).label == "malignant"
        model.config.decision_threshold = 1.0
        assert predict_clip(model, processor, clip_path, frame_stride=8).label == "benign"
    finally:
        model.config.decision_threshold = original


def test_crop_cuts_the_static_border(loaded, clip_path):
    model, processor = loaded
    cropped = predict_clip(model, processor, clip_path, frame_stride=STRIDE, crop=True)
    full = predict_clip(model, processor, clip_path, frame_stride=STRIDE, crop=False)
    assert full.crop_box is None and full.frames[0].shape == (synthetic.HEIGHT, synthetic.WIDTH)
    top, left, bottom, right = cropped.crop_box
    assert cropped.frames[0].shape == (bottom - top, right - left)
    assert cropped.frames[0].size < full.frames[0].size


def test_one_image_path(loaded, tmp_path):
    model, processor = loaded
    result = predict_clip(model, processor, write_png(tmp_path / "still.png"), frame_stride=STRIDE)
    assert_consistent(result, 1)
    assert math.isnan(result.fps) and math.isnan(result.times_s[0])
    assert result.frame_stride == 1


def test_list_of_stills_of_mixed_types_and_sizes(loaded, tmp_path):
    model, processor = loaded
    array = np.random.default_rng(1).integers(0, 255, (36, 50, 3), dtype=np.uint8)
    pil = PIL.Image.fromarray(np.full((64, 34), 128, dtype=np.uint8))
    path = write_png(tmp_path / "a.png")
    result = predict_clip(model, processor, [path, array, pil], crop=False)
    assert_consistent(result, 3)
    np.testing.assert_array_equal(result.frame_indices, [0, 1, 2])
    assert [frame.shape for frame in result.frames] == [(40, 72), (36, 50), (64, 34)]
    assert result.sources[0] == str(path) and result.sources[1] == "<image 1>"


def test_dicom_cine(loaded):
    model, processor = loaded
    result = predict_clip(model, processor, dicom_examples.get_path("ybr_color"), frame_stride=10, crop=False)
    assert_consistent(result, 3)  # 30 frames, stride 10


def test_a_long_clip_is_sampled_evenly_not_refused(loaded, clip_path):
    """More frames than max_frames at the asked stride: the stride is raised, the frames span the whole clip."""
    model, processor = loaded
    result = predict_clip(model, processor, clip_path, frame_stride=STRIDE, max_frames=3)
    assert result.num_frames == 3
    assert result.frame_stride == math.ceil(synthetic.FRAME_COUNT / 3) > STRIDE
    np.testing.assert_array_equal(np.diff(result.frame_indices), result.frame_stride)
    assert result.frame_indices[-1] >= synthetic.FRAME_COUNT - result.frame_stride
    assert predict_clip(model, processor, clip_path, frame_stride=STRIDE, max_frames=8).num_frames == 8


def test_too_many_stills_states_the_limit(loaded, tmp_path):
    model, processor = loaded
    stills = [write_png(tmp_path / f"still{index}.png", seed=index) for index in range(3)]
    with pytest.raises(ClipTooLongError, match="more than 2 images; give at most 2"):
        predict_clip(model, processor, stills, max_frames=2)


def test_seconds_cap_states_the_limit(loaded, clip_path):
    model, processor = loaded
    with pytest.raises(ClipTooLongError, match=r"limit of 0\.5 s"):
        predict_clip(model, processor, clip_path, frame_stride=STRIDE, max_seconds=0.5)


def test_too_many_pixels(loaded, clip_path):
    model, processor = loaded
    with pytest.raises(ClipReadError, match="max_pixels"):
        predict_clip(model, processor, clip_path, max_pixels=100)


@pytest.mark.parametrize(
    "make",
    [
        lambda folder, clip: synthetic.write_text_as_mp4(folder / "text.mp4"),
        lambda folder, clip: synthetic.write_truncated(folder / "cut.mp4", clip),
        lambda folder, clip: synthetic.write_corrupt(folder / "noise.avi"),
        lambda folder, clip: synthetic.write_dicom(folder / "empty.dcm", with_pixels=False),
        lambda folder, clip: synthetic.write_zero_frame_video(folder / "empty.avi"),
        lambda folder, clip: folder / "missing.mp4",
    ],
    ids=["text_as_mp4", "truncated", "corrupt", "dicom_without_pixels", "zero_frames", "missing"],
)
def test_bad_files_raise_naming_the_file(loaded, clip_path, tmp_path, make):
    model, processor = loaded
    bad = make(tmp_path, clip_path)
    with pytest.raises(ClipReadError) as caught:
        predict_clip(model, processor, bad)
    assert bad.name in str(caught.value)
    assert caught.value.reason


def test_a_clip_cannot_be_mixed_with_images(loaded, clip_path, tmp_path):
    model, processor = loaded
    with pytest.raises(ClipReadError, match="on its own"):
        predict_clip(model, processor, [clip_path, write_png(tmp_path / "b.png")])


def test_bad_arguments(loaded, clip_path):
    model, processor = loaded
    with pytest.raises(ValueError, match="clip_aggregation"):
        predict_clip(model, processor, clip_path, clip_aggregation="vote")
    with pytest.raises(ValueError, match="No file"):
        predict_clip(model, processor, [])
