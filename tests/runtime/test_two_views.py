"""Two views: each frame classified whole and on its lesion crop (the lesion segmenter's mask box plus the crop
classifier's margin), their calibrated probabilities averaged, against a frame-by-frame reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from demo.summary import summary_markdown
from tests.helpers.demo_fixtures import save_tiny_classifier, save_tiny_lesion_model, write_clip
from tests.helpers.paths import REPO_ROOT as ROOT
from usvcl_hf.lesion_crop import crop_to_box, lesion_crops, mask_box
from usvcl_hf.runtime.clip_prediction import CROP_VIEW, WHOLE_VIEW, frame_malignancy, load_model, predict_clip
from usvcl_hf.runtime.lesion import lesion_masks, load_lesion_model

STRIDE = 4
MARGIN = 0.2


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Saved tiny random models: whole-image classifier, lesion-crop classifier (margin 0.2), lesion segmenter."""
    root = tmp_path_factory.mktemp("models")
    return {"whole": save_tiny_classifier(root / "whole", decision_threshold=0.4),
            "crop": save_tiny_classifier(root / "crop", lesion_crop_margin=MARGIN, decision_threshold=0.7),
            "lesion": save_tiny_lesion_model(root / "lesion", lesion_threshold=0.0)}


@pytest.fixture(scope="module")
def models(folders):
    return {name: (load_lesion_model if name == "lesion" else load_model)(folder) for name, folder in folders.items()}


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "sweep.mp4")


def predict(models, clip_path, views: int = 2):
    crop = models["crop"] if views == 2 else (None, None)
    return predict_clip(*models["whole"], clip_path, frame_stride=STRIDE, lesion_model=models["lesion"][0],
                        lesion_processor=models["lesion"][1], crop_model=crop[0], crop_processor=crop[1])


def test_lesion_crops_cut_each_frame_around_its_mask_or_keep_it_whole():
    frames = [np.arange(120, dtype=np.uint8).reshape(10, 12), np.ones((6, 8), np.uint8)]
    masks = [np.zeros((10, 12), bool), np.zeros((6, 8), bool)]
    masks[0][2:5, 3:9] = True
    crops, boxes = lesion_crops(masks, frames, margin=0.5)
    assert boxes == [(3, 2, 9, 5), None]
    np.testing.assert_array_equal(crops[0], frames[0][0:7, 0:12])  # 6 x 3 box grown by 3 and 2 on each side
    assert crops[1] is frames[1]
    with pytest.raises(ValueError, match="does not fit its frame"):
        lesion_crops([np.zeros((5, 5), bool)], [frames[0]], margin=0.5)


def test_two_views_average_the_whole_frame_and_its_lesion_crop(models, clip_path):
    one, two = predict(models, clip_path, views=1), predict(models, clip_path)
    masks = lesion_masks(*models["lesion"], two.frames)
    assert any(mask.any() for mask in masks) and not all(mask.all() for mask in masks)
    crops = [crop_to_box(frame, mask_box(mask), MARGIN) for frame, mask in zip(two.frames, masks)]
    crop_probabilities = frame_malignancy(*models["crop"], crops)  # (T,) one crop at a time, as a reference
    assert two.lesion_boxes == [mask_box(mask) for mask in masks]
    np.testing.assert_array_equal(two.suspicious_lesion_mask, masks[two.most_suspicious_frame])  # the demo's outline
    assert one.suspicious_lesion_mask is None
    np.testing.assert_allclose(two.view_probabilities[WHOLE_VIEW], one.frame_probabilities)
    np.testing.assert_allclose(two.view_probabilities[CROP_VIEW], crop_probabilities, atol=1e-6)
    np.testing.assert_allclose(two.frame_probabilities, (one.frame_probabilities + crop_probabilities) / 2,
                               atol=1e-6)
    assert one.view_probabilities is None and one.threshold == pytest.approx(0.4)
    assert two.threshold == pytest.approx((0.4 + 0.7) / 2)
    assert two.label == ("malignant" if two.malignancy >= two.threshold else "benign")
    assert "views: each frame's P(malignant) is the mean of whole image and lesion crop" in summary_markdown(
        two, "tiny", 1.0)


def test_a_crop_model_must_be_a_crop_classifier_with_a_lesion_model(models, clip_path):
    whole, crop = models["whole"], models["crop"]
    with pytest.raises(ValueError, match="classifies whole images"):
        predict_clip(*whole, clip_path, lesion_model=models["lesion"][0], lesion_processor=models["lesion"][1],
                     crop_model=whole[0], crop_processor=whole[1])
    with pytest.raises(ValueError, match="needs a lesion_model"):
        predict_clip(*whole, clip_path, crop_model=crop[0], crop_processor=crop[1])


def test_demo_loads_the_crop_model_with_the_lesion_model(folders, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT))
    import app

    lesion = app.load_demo_lesion_model(str(folders["lesion"]), str(folders["crop"]))
    assert lesion.crop_model.config.lesion_crop_margin == MARGIN and lesion.crop_name == str(folders["crop"])
    assert app.load_demo_lesion_model(str(folders["lesion"]), "none").crop_model is None
    with pytest.raises(SystemExit, match=r"classifies whole images(.|\n)*--crop-model none"):
        app.load_demo_lesion_model(str(folders["lesion"]), str(folders["whole"]))
    with pytest.raises(SystemExit, match=r"--crop-model .* needs a lesion model"):
        app.load_demo_lesion_model("none", str(folders["crop"]))
    assert app.load_demo_lesion_model("none", app.DEFAULT_CROP_MODEL) is None
    monkeypatch.setattr(app, "APP_DIR", Path(tmp_path))  # no models/ folder here: the defaults are optional
    assert app.load_demo_lesion_model(str(folders["lesion"]), app.DEFAULT_CROP_MODEL).crop_model is None
    assert app.load_demo_lesion_model(app.DEFAULT_LESION_MODEL, app.DEFAULT_CROP_MODEL) is None


def test_demo_outlines_the_mask_two_views_already_computed(models, clip_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import app

    lesion = app.LesionModel(*models["lesion"], "tiny")
    one, two = predict(models, clip_path, views=1), predict(models, clip_path)
    assert app.suspicious_lesion_mask(two, lesion) is two.suspicious_lesion_mask
    expected = lesion_masks(*models["lesion"], [one.frames[one.most_suspicious_frame]])[0]
    np.testing.assert_array_equal(app.suspicious_lesion_mask(one, lesion), expected)
