"""One picture, one answer, whatever its encoding: 8-bit, 16-bit (x 257), RGB, RGBA PNGs and DICOM files (8 bits;
12 of 16 bits stored; 16 bits with a window; 12 bits through a VOI LUT; 12 bits MONOCHROME1) of the same grey
picture give the same P(malignant) at every door: `pipeline("image-classification")`, the two-view pipeline,
`predict_clip` and the demo's analysis.

Pixels are scaled by the range their encoding stores (module doc of `usvcl_hf/image_processing_usvcl.py`), never by
the picture's own min/max: a 16-bit PNG of a dark picture stays dark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from transformers import pipeline

import app
from tests.helpers.demo_fixtures import save_tiny_classifier, save_tiny_lesion_model
from training import synthetic
from training.export import set_two_views
from training.export.refresh_code import refresh_code
from usvcl_hf import UsvclConfig
from usvcl_hf.runtime.clip_prediction import load_model, predict_clip
from usvcl_hf.runtime.video import read_clip

HEIGHT, WIDTH = 64, 96
TOLERANCE = 1e-3
BITS_12_MAX = 2**12 - 1
WINDOW_LOW, WINDOW_STEP = 1000, 4  # stored value = 1000 + 4 x; the window maps 1000..2020 onto black..white
SHARP = {"calibration_temperature": 0.002}  # a random tiny model barely reacts to its input: sharpen its scores
ENCODINGS = ("8-bit", "16-bit", "rgb", "rgba", "dicom-8", "dicom-12", "dicom-window", "dicom-voi-lut", "dicom-mono1")


def picture() -> np.ndarray:
    """`(H, W)` uint8: speckle-like noise with a dark lesion, mostly darker than mid-grey (min/max would stretch)."""
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = rng.integers(40, 120, (HEIGHT, WIDTH))
    image[((rows - 32) / 14) ** 2 + ((columns - 44) / 20) ** 2 <= 1] = 12
    return image.astype(np.uint8)


def write(encoding: str, folder: Path) -> Path:
    """The picture as one encoding."""
    grey = picture()
    if encoding.startswith("dicom"):
        return write_dicom(encoding, grey, folder / f"{encoding}.dcm")
    opaque = np.full_like(grey, 255)
    arrays = {"8-bit": grey, "16-bit": grey.astype(np.uint16) * 257, "rgb": np.stack([grey] * 3, axis=-1),
              "rgba": np.stack([grey, grey, grey, opaque], axis=-1)}
    path = folder / f"{encoding}.png"
    PIL.Image.fromarray(arrays[encoding]).save(path)
    return path


def write_dicom(encoding: str, grey: np.ndarray, path: Path) -> Path:
    """A one-frame DICOM of the picture: 8 bits, 12 of 16 bits, or 16 bits shown through a window."""
    if encoding == "dicom-8":
        return synthetic.write_dicom(path, grey[None])
    stored_12 = np.rint(grey.astype(np.float64) * BITS_12_MAX / 255).astype(np.uint16)
    if encoding == "dicom-12":
        return synthetic.write_dicom(path, stored_12[None], bits_stored=12)
    if encoding == "dicom-mono1":  # white is 0
        return synthetic.write_dicom(path, (BITS_12_MAX - stored_12)[None], bits_stored=12,
                                     PhotometricInterpretation="MONOCHROME1")
    if encoding == "dicom-voi-lut":  # a table from the 12 stored bits to 16 output bits
        return synthetic.write_dicom(path, stored_12[None], bits_stored=12, VOILUTSequence=[voi_lut()])
    stored = (WINDOW_LOW + WINDOW_STEP * grey.astype(np.uint16)).astype(np.uint16)
    width = 255 * WINDOW_STEP + 1  # DICOM's LINEAR window: [c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2]
    return synthetic.write_dicom(path, stored[None], WindowCenter=WINDOW_LOW + (width - 1) / 2 + 0.5,
                                 WindowWidth=width)


def voi_lut():
    """A VOI LUT item mapping 12-bit stored values onto 16 output bits: the 8-bit picture x 257."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor = [BITS_12_MAX + 1, 0, 16]
    eight_bit = np.rint(np.arange(BITS_12_MAX + 1) * 255 / BITS_12_MAX)
    item.LUTData = (eight_bit * 257).astype("<u2").tobytes()  # OW
    return item


def decoded(path: Path):
    """What a pipeline is given: a PNG's own array (transformers' `load_image` would make it 8-bit RGB), a DICOM's
    grey image as `usvcl_hf.runtime.video` reads it."""
    if path.suffix == ".dcm":
        return read_clip(path, max_frames=1).frames[0]
    with PIL.Image.open(path) as image:
        return np.asarray(image)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny classifier naming a tiny lesion model (every image a lesion) and a tiny crop classifier beside it."""
    root = tmp_path_factory.mktemp("models")
    save_tiny_classifier(root / "crop", lesion_crop_margin=0.2, decision_threshold=0.6, **SHARP)
    save_tiny_lesion_model(root / "lesion", lesion_threshold=0.0)
    whole = save_tiny_classifier(root / "whole", decision_threshold=0.4, **SHARP)
    config = UsvclConfig.from_pretrained(whole)
    set_two_views(config, "someone/lesion", "someone/crop")
    config.save_pretrained(whole)
    refresh_code(whole)
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encodings")
    return {encoding: write(encoding, folder) for encoding in ENCODINGS}


def test_every_encoding_decodes_to_the_same_grey(files) -> None:
    for encoding, path in files.items():
        np.testing.assert_array_equal(read_clip(path).frames[0], picture(), err_msg=encoding)


def assert_same(probabilities: dict[str, float]) -> None:
    reference = probabilities["8-bit"]
    for encoding, probability in probabilities.items():
        assert probability == pytest.approx(reference, abs=TOLERANCE), encoding


def test_image_classification_pipeline(models, files) -> None:
    model, processor = load_model(models / "whole")
    classify = pipeline("image-classification", model=model, image_processor=processor)
    scores = {encoding: {row["label"]: row["score"] for row in classify(decoded(path))}["malignant"]
              for encoding, path in files.items()}
    assert_same(scores)


def test_two_view_pipeline(models, files) -> None:
    classify = pipeline(model=str(models / "whole"), trust_remote_code=True)
    answers = {encoding: classify(decoded(path) if path.suffix == ".dcm" else str(path))
               for encoding, path in files.items()}
    assert {answer["label"] for answer in answers.values()} <= {"benign", "malignant"}
    assert_same({encoding: answer["probabilities"]["malignant"] for encoding, answer in answers.items()})


def test_the_models_tell_a_stretched_picture_apart(models) -> None:
    """The check below can fail: the picture stretched by its own min/max (the old 16-bit rule) is answered
    differently by more than the tolerance."""
    model, processor = load_model(models / "whole")
    grey = picture().astype(np.float64)
    stretched = np.rint((grey - grey.min()) * 255 / (grey.max() - grey.min())).astype(np.uint8)
    answers = [predict_clip(model, processor, image).probabilities["malignant"] for image in (picture(), stretched)]
    assert abs(answers[0] - answers[1]) > 2 * TOLERANCE


def test_predict_clip(models, files) -> None:
    model, processor = load_model(models / "whole")
    assert_same({encoding: predict_clip(model, processor, str(path)).probabilities["malignant"]
                 for encoding, path in files.items()})


def test_demo_analysis(models, files) -> None:
    model, processor = load_model(models / "whole")
    lesion = app.load_demo_lesion_model(str(models / "lesion"), str(models / "crop"))
    probabilities = {}
    for encoding, path in files.items():
        outputs = app.run_analysis(model, processor, "whole", [str(path)], 1, model.config.clip_aggregation, True,
                                   lesion)
        (bar,) = outputs[0].confidences  # the label's one bar: P(malignant)
        probabilities[encoding] = bar.confidence
    assert_same(probabilities)
