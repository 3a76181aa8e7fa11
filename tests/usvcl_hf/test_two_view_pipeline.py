"""The two-view pipeline (`usvcl_hf/pipeline_usvcl.py`): `pipeline(model=folder, trust_remote_code=True)` on a
classifier that names its companions answers as `predict_clip` with the lesion and lesion-crop models does."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from transformers import pipeline

import app
from tests.helpers.demo_fixtures import save_tiny_classifier, save_tiny_lesion_model
from tests.helpers.paths import REPO_ROOT
from training.export import set_two_views
from training.export.refresh_code import code_files, refresh_code
from usvcl_hf import UsvclConfig
from usvcl_hf.pipeline_usvcl import TASK
from usvcl_hf.runtime.clip_prediction import load_model, predict_clip
from usvcl_hf.runtime.lesion import NO_LESION_LABEL, load_lesion_model

BUNDLED_IMAGES = sorted((REPO_ROOT / "tests" / "fixtures" / "bus_bra").glob("*.png"))[:3]
PIPELINE_FILES = {"pipeline_usvcl.py", "lesion_crop.py", "configuration_lesion.py"}


def name_companions(folder: Path, lesion: str, crop: str) -> Path:
    """What `training.export.refresh --two-view-models` writes: the companions in config.json, and the code."""
    config = UsvclConfig.from_pretrained(folder)
    set_two_views(config, lesion, crop)
    config.save_pretrained(folder)
    refresh_code(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny random models side by side, the classifier naming the others by Hub-style ids."""
    root = tmp_path_factory.mktemp("models")
    folders = {"whole": save_tiny_classifier(root / "whole", decision_threshold=0.4),
               "crop": save_tiny_classifier(root / "crop", lesion_crop_margin=0.2, decision_threshold=0.7),
               "lesion": save_tiny_lesion_model(root / "lesion", lesion_threshold=0.0),
               "no_lesion": save_tiny_lesion_model(root / "no_lesion", lesion_threshold=1.0)}
    name_companions(folders["whole"], "someone/lesion", "someone/crop")  # found beside it, offline
    return folders


def grey_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:64, 0:96]
    images = []
    for centre in (30, 48, 66):
        image = rng.integers(60, 140, (64, 96))
        image[((rows - 32) / 14) ** 2 + ((columns - centre) / 20) ** 2 <= 1] = 15  # a dark lesion
        images.append(image.astype(np.uint8))
    return images


@functools.cache
def loaded(folder: Path, lesion: bool = False) -> tuple:
    return (load_lesion_model if lesion else load_model)(folder)


def reference(whole: Path, lesion: Path, crop: Path, image: np.ndarray):
    """`predict_clip` with two views on one still, no imaging-region crop."""
    lesion_model, lesion_processor = loaded(lesion, lesion=True)
    crop_model, crop_processor = loaded(crop)
    return predict_clip(*loaded(whole), image, crop=False, lesion_model=lesion_model,
                        lesion_processor=lesion_processor, crop_model=crop_model, crop_processor=crop_processor)


def assert_same_answer(answer: dict, expected) -> None:
    assert answer["label"] == expected.label
    assert answer["threshold"] == pytest.approx(expected.threshold)
    assert answer["lesion_probability"] == pytest.approx(expected.lesion_probabilities[0], abs=1e-5)
    for name, probability in expected.probabilities.items():
        assert answer["probabilities"][name] == pytest.approx(probability, abs=1e-5)
    assert answer["probabilities"].keys() == expected.probabilities.keys()
    if expected.lesion_boxes is not None:
        assert answer["lesion_box"] == expected.lesion_boxes[0]
        for view, probabilities in expected.view_probabilities.items():
            assert answer["view_probabilities"][view] == pytest.approx(probabilities[0], abs=1e-5)


def test_the_folder_names_the_task_and_carries_its_code(folders):
    config = json.loads((folders["whole"] / "config.json").read_text())
    assert list(config["custom_pipelines"]) == [TASK]
    assert config["two_view_models"] == {"lesion_model": "someone/lesion", "crop_model": "someone/crop"}
    assert set(code_files(folders["whole"])) >= PIPELINE_FILES
    assert all((folders["whole"] / name).is_file() for name in PIPELINE_FILES)


def test_pipeline_answers_as_predict_clip_with_two_views(folders):
    classify = pipeline(model=str(folders["whole"]), trust_remote_code=True)  # the task from config.json
    assert type(classify).__name__ == "UsvclTwoViewPipeline"
    images = grey_images()
    answers = classify(images)
    for image, answer in zip(images, answers, strict=True):
        assert_same_answer(answer, reference(folders["whole"], folders["lesion"], folders["crop"], image))
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0)


def test_no_lesion_is_answered_without_probabilities(folders):
    classify = pipeline(model=str(folders["whole"]), trust_remote_code=True, lesion_model=str(folders["no_lesion"]))
    image = grey_images()[0]
    answer = classify(image)
    assert answer["label"] == NO_LESION_LABEL and answer["probabilities"] == {}
    assert_same_answer(answer, reference(folders["whole"], folders["no_lesion"], folders["crop"], image))


def test_companions_are_checked(folders, tmp_path):
    with pytest.raises(ValueError, match=r"whole images.*not of lesion crops"):
        pipeline(model=str(folders["whole"]), trust_remote_code=True, crop_model=str(folders["whole"]))
    with pytest.raises(ValueError, match="not a lesion segmenter"):
        pipeline(model=str(folders["whole"]), trust_remote_code=True, lesion_model=str(folders["crop"]))
    plain = save_tiny_classifier(tmp_path / "plain")
    with pytest.raises(ValueError, match="No lesion_model"):
        pipeline(TASK, model=str(plain), trust_remote_code=True)
    with pytest.raises(ValueError, match="two_view_models"):
        UsvclConfig(two_view_models={"lesion_model": "a"})


def test_bundled_model_answers_with_the_bundled_pair():
    models = REPO_ROOT / "models"
    classify = pipeline(model=str(REPO_ROOT / app.DEFAULT_MODEL), trust_remote_code=True)
    answers = classify([str(path) for path in BUNDLED_IMAGES])
    for path, answer in zip(BUNDLED_IMAGES, answers, strict=True):
        image = np.asarray(Image.open(path).convert("L"))
        assert_same_answer(answer, reference(REPO_ROOT / app.DEFAULT_MODEL, models / "usvcl-lesion-busbra",
                                             models / "usvcl-lite0-crops-busbra", image))
        assert answer["lesion_box"] is not None and answer["label"] != NO_LESION_LABEL  # BUS-BRA: every image a lesion
