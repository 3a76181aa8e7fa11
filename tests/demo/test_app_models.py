"""The demo describes and uses the models it was given: `--model X` means X (its companions come from X's own
config, or none), and the page and the summary name every model that contributes, their backbone, initialisation,
views, lesion step and calibration, from the loaded configs and results.json, never from fixed prose."""

from __future__ import annotations

import pytest

import app
from demo.summary import calibration_line, models_line, models_markdown
from tests.helpers.demo_fixtures import save_tiny_classifier, save_tiny_lesion_model
from tests.helpers.paths import REPO_ROOT as ROOT
from training.export import set_two_views
from usvcl_hf import UsvclConfig
from usvcl_hf.pipeline_usvcl import named_companions
from usvcl_hf.runtime.clip_prediction import load_model

SITE = {"benign": 40, "malignant": 23, "date": "2026-11-30"}
UNTRUE_PROSE = ("contrastive learning on ultrasound clips", "temperature scaling")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A plain tiny classifier, and one naming a lesion model and a crop model beside it."""
    root = tmp_path_factory.mktemp("models")
    save_tiny_lesion_model(root / "lesion")
    save_tiny_classifier(root / "crop", lesion_crop_margin=0.2)
    named = save_tiny_classifier(root / "named")
    config = UsvclConfig.from_pretrained(named)
    set_two_views(config, "someone/lesion", "someone/crop")
    config.save_pretrained(named)
    return {"plain": save_tiny_classifier(root / "plain"), "named": named, "root": root}


def served_models(monkeypatch, argv: list[str]) -> dict:
    """What `python app.py ARGV` would serve: build_demo's arguments (the server is not started)."""
    seen = {}

    def build(model, processor, model_name, lesion=None):
        seen.update(model=model, model_name=model_name, lesion=lesion)
        raise SystemExit(0)

    monkeypatch.setattr(app, "build_demo", build)
    monkeypatch.setattr(app.signal, "signal", lambda *args: None)
    with pytest.raises(SystemExit):
        app.main(argv)
    return seen


def test_a_model_naming_no_companions_is_served_alone(folders, monkeypatch):
    for variable in ("USVCL_LESION_MODEL", "USVCL_CROP_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    seen = served_models(monkeypatch, ["--model", str(folders["plain"])])
    assert seen["lesion"] is None  # not the bundled lesion and crop models, although they are there
    assert models_line(seen["model_name"], seen["lesion"]) == (
        f"whole image `{folders['plain']}`, no lesion model")


def test_a_model_brings_the_companions_its_config_names(folders, monkeypatch):
    for variable in ("USVCL_LESION_MODEL", "USVCL_CROP_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(folders["root"])
    seen = served_models(monkeypatch, ["--model", "named"])
    lesion = seen["lesion"]
    assert (lesion.name, lesion.crop_name) == ("lesion", "crop")  # beside the model, named as the model was
    line = models_line(seen["model_name"], lesion)
    assert line == "whole image `named`, lesion `lesion`, lesion crop `crop`"
    assert served_models(monkeypatch, ["--model", "named", "--crop-model", "none"])["lesion"].crop_model is None


def test_the_page_describes_the_loaded_models(folders):
    model, _ = load_model(folders["plain"])
    text = models_markdown(model, "tiny")
    assert "`resnet18` CNN on 64 px" in text and "initialisation not recorded" in text  # no results.json
    assert "one view" in text and "no lesion step" in text and "calibration: none (raw scores)" in text
    assert not any(phrase in text for phrase in UNTRUE_PROSE)


@pytest.mark.skipif(not (ROOT / app.DEFAULT_MODEL).is_dir(), reason="the bundled models are not exported")
def test_the_page_of_the_bundled_models_says_what_they_are(monkeypatch):
    for variable in ("USVCL_LESION_MODEL", "USVCL_CROP_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    model, processor = load_model(ROOT / app.DEFAULT_MODEL)
    named = named_companions(model)
    lesion = app.load_demo_lesion_model(named["lesion_model"], named["crop_model"])
    text = models_markdown(model, app.DEFAULT_MODEL, lesion)
    assert f"`{model.config.backbone}` CNN on {model.config.image_size} px" in text
    assert "initialised from ImageNet weights" in text and "two views" in text and "lesion step" in text
    assert "calibration: temperature and bias, training site's calibration" in text
    assert app.DEFAULT_LESION_MODEL in text and app.DEFAULT_CROP_MODEL in text
    assert not any(phrase in text for phrase in UNTRUE_PROSE)
    demo = app.build_demo(model, processor, app.DEFAULT_MODEL, lesion)
    try:
        shown = [block.value for block in demo.blocks.values() if getattr(block, "elem_id", None) == "explanation"]
        assert len(shown) == 1 and text in shown[0]
    finally:
        demo.usvcl_storage.close()


def test_a_site_calibration_is_named_on_the_page_and_in_the_summary(folders):
    model, _ = load_model(folders["plain"])
    model.config.site_calibration = SITE
    model.config.calibration_bias = -0.2
    expected = "site calibration: 40 benign / 23 malignant images, 2026-11-30"
    assert expected in models_markdown(model, "tiny")
    assert calibration_line(model) == f"whole image: temperature and bias, {expected}"
    assert "training site" not in calibration_line(model)


@pytest.mark.parametrize(("probability", "threshold", "shown"), [
    (0.329, 0.31, ("0.329", "0.310")),
    (0.30521, 0.30549, ("0.3052", "0.3055")),  # 3 decimals would read "0.305 < 0.305"
    (0.3056, 0.30549, ("0.306", "0.305")),
    (0.30551, 0.30549, ("0.306", "0.305")),
])
def test_the_numbers_of_a_decision_read_as_it_is_decided(probability, threshold, shown):
    from demo.summary import decision_numbers

    assert decision_numbers(probability, threshold) == shown
