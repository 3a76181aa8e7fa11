"""`python -m training.calibrate_site`: a tiny model refitted on synthetic labelled images; the folder it writes;
the inputs it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.clean_process import run_isolated
from tests.helpers.demo_fixtures import save_tiny_classifier, write_png
from training import evaluation
from training.calibrate_site import (
    fit_site_calibration,
    load_site_models,
    main,
    model_aggregation,
    read_labels,
    score_items,
)
from training.calibrate_site.inputs import LABELS, MIN_PER_CLASS, SiteItem
from usvcl_hf.runtime.aggregation import sigmoid

PER_CLASS = MIN_PER_CLASS + 2
SCALE = 30.0  # the tiny head's weights scaled up: a random network's scores barely differ between images
OLD_THRESHOLD = 0.97  # the tiny model's own threshold: (almost) nothing is malignant before site calibration


def spread_tiny_classifier(folder: Path) -> Path:
    """The tiny classifier with threshold OLD_THRESHOLD and its head scaled up, so that its scores spread."""
    import torch

    from usvcl_hf import UsvclForImageClassification

    save_tiny_classifier(folder, decision_threshold=OLD_THRESHOLD, threshold_in_logits=True)
    model = UsvclForImageClassification.from_pretrained(folder)
    with torch.no_grad():
        for parameter in model.classifier.parameters():
            parameter.mul_(SCALE)
    model.save_pretrained(folder)
    return folder


def write_level_png(path: Path, index: int) -> Path:
    """A 48 x 64 grey PNG, its level and texture set by `index` (distinct images, distinct scores)."""
    from PIL import Image

    rng = np.random.default_rng(index)
    pixels = np.clip(20 + 9 * index + rng.integers(0, 40, (48, 64)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """A tiny classifier (threshold OLD_THRESHOLD) and 2 x PER_CLASS synthetic images labelled by its own raw
    score (the higher half malignant), as a CSV and as class folders."""
    root = tmp_path_factory.mktemp("site")
    model = spread_tiny_classifier(root / "model")
    (root / "images").mkdir()
    images = [write_level_png(root / "images" / f"image_{index:02d}.png", index) for index in range(2 * PER_CLASS)]
    models = load_site_models(model)
    scores = score_items(models, [SiteItem(path, 0, path.name) for path in images])
    raw = np.array([item.views["whole image"][0] for item in scores])
    order = np.argsort(raw)
    labels = np.zeros(len(raw), dtype=int)  # (n,): the higher half malignant, but for one swapped pair (so that
    labels[order[PER_CLASS:]] = 1  # the classes overlap a little and the fitted temperature stays finite)
    labels[order[PER_CLASS - 3]], labels[order[PER_CLASS + 2]] = 1, 0
    (root / "labels.csv").write_text("image,label\n" + "".join(
        f"images/{path.name},{LABELS[label]}\n" for path, label in zip(images, labels)))
    return {"root": root, "model": model, "images": images, "labels": labels, "raw": raw, "models": models}


@pytest.fixture(scope="module")
def calibrated(site) -> Path:
    output = site["root"] / "site_model"
    assert main(["--model", str(site["model"]), "--labels", str(site["root"] / "labels.csv"), "--output",
                 str(output), "--bootstrap", "50"]) == 0
    return output


def test_the_threshold_moves_between_the_classes(site, calibrated) -> None:
    """Temperature, bias and threshold by training's rules (lowest NLL; Youden's J on the calibrated
    probabilities): the threshold leaves 0.97 for one between the classes; weights unchanged."""
    config = json.loads((calibrated / "config.json").read_text())
    temperature, bias = config["calibration_temperature"], config["calibration_bias"]
    probabilities = sigmoid(site["raw"] / temperature + bias)
    logits = np.stack([np.zeros_like(site["raw"]), site["raw"]], axis=1)  # (n, 2)
    assert (temperature, bias) == pytest.approx(evaluation.fit_calibration(logits, site["labels"]), rel=1e-6)
    assert config["decision_threshold"] == pytest.approx(evaluation.youden_threshold(site["labels"], probabilities))
    assert np.median(probabilities[site["labels"] == 0]) < config["decision_threshold"] < OLD_THRESHOLD
    assert config["decision_threshold"] <= np.median(probabilities[site["labels"] == 1])
    assert config["site_calibration"]["benign"] == config["site_calibration"]["malignant"] == PER_CLASS
    assert config["site_calibration"]["date"] == config["site_calibration"]["date"][:10]
    assert (calibrated / "model.safetensors").read_bytes() == (site["model"] / "model.safetensors").read_bytes()
    refit = fit_site_calibration(score_items(site["models"], read_labels(site["root"] / "labels.csv")),
                                 site["labels"], model_aggregation(site["models"]))
    assert refit.views["whole image"] == pytest.approx((temperature, bias))


def test_report_and_card(calibrated) -> None:
    report = json.loads((calibrated / "site_calibration.json").read_text())
    for side in ("model", "site"):
        assert {"auc", "sensitivity", "specificity"} <= set(report["report"][side])
    assert report["report"]["old_threshold"] == pytest.approx(OLD_THRESHOLD)
    assert report["report"]["model"]["sensitivity"]["value"] < report["report"]["site"]["sensitivity"]["value"]
    card = (calibrated / "README.md").read_text()
    assert "## Site calibration" in card and f"{PER_CLASS} benign and {PER_CLASS} malignant" in card


def test_the_folder_loads_without_usvcl_hf_and_answers_with_the_new_calibration(site, calibrated) -> None:
    result = run_isolated(
        f"""
        import PIL.Image
        from transformers import AutoConfig, pipeline
        folder = {str(calibrated)!r}
        classify = pipeline("image-classification", model=folder, trust_remote_code=True)
        answers = [classify(PIL.Image.open(path))[0]["label"] for path in {[str(p) for p in site["images"]]!r}]
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        result = dict(answers=answers, threshold=config.decision_threshold, record=config.site_calibration)
        """,
        cwd=site["root"],
    )
    config = json.loads((calibrated / "config.json").read_text())
    probabilities = sigmoid(site["raw"] / config["calibration_temperature"] + config["calibration_bias"])
    expected = [LABELS[int(p >= config["decision_threshold"])] for p in probabilities]
    clear = np.abs(probabilities - config["decision_threshold"]) > 1e-4  # the image at the threshold: float rounding
    assert clear.sum() >= len(clear) - 2
    assert np.array(result["answers"])[clear].tolist() == np.array(expected)[clear].tolist()
    assert expected.count("malignant") > 1  # before: (almost) none at 0.97
    assert result["record"]["benign"] == PER_CLASS


def test_class_folders_give_the_same_calibration(site, calibrated, tmp_path) -> None:
    for path, label in zip(site["images"], site["labels"]):
        (tmp_path / "labels" / LABELS[label]).mkdir(parents=True, exist_ok=True)
        (tmp_path / "labels" / LABELS[label] / path.name).write_bytes(path.read_bytes())
    output = tmp_path / "out"
    assert main(["--model", str(site["model"]), "--labels", str(tmp_path / "labels"), "--output", str(output),
                 "--bootstrap", "20"]) == 0
    first, second = (json.loads((folder / "config.json").read_text()) for folder in (calibrated, output))
    assert second["decision_threshold"] == pytest.approx(first["decision_threshold"])


def refused(site, tmp_path, capsys, rows: list[str], *extra: str) -> str:
    """Run on a CSV of `rows`; assert exit 2 and nothing written; return the message."""
    (tmp_path / "labels.csv").write_text("image,label\n" + "".join(row + "\n" for row in rows))
    output = tmp_path / "out"
    assert main(["--model", str(site["model"]), "--labels", str(tmp_path / "labels.csv"), "--output", str(output),
                 *extra]) == 2
    assert not output.exists() or extra
    return capsys.readouterr().err


def good_rows(site, tmp_path) -> list[str]:
    for path in site["images"]:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    return [f"{path.name},{LABELS[label]}" for path, label in zip(site["images"], site["labels"])]


def test_too_few_images_of_a_class(site, tmp_path, capsys) -> None:
    rows = [row for row in good_rows(site, tmp_path) if row.endswith("benign")][:MIN_PER_CLASS - 1]
    rows += [row for row in good_rows(site, tmp_path) if row.endswith("malignant")]
    assert f"{MIN_PER_CLASS - 1} benign images" in refused(site, tmp_path, capsys, rows)


def test_unknown_labels_and_missing_files(site, tmp_path, capsys) -> None:
    rows = good_rows(site, tmp_path)
    message = refused(site, tmp_path, capsys, [*rows, "x.png,cyst"])
    assert "unknown labels" in message and "x.png ('cyst')" in message
    message = refused(site, tmp_path, capsys, [*rows, "gone.png,benign"])
    assert "missing" in message and "gone.png" in message


def test_unreadable_and_too_small_images(site, tmp_path, capsys) -> None:
    rows = good_rows(site, tmp_path)
    (tmp_path / "broken.png").write_text("not an image")
    write_png(tmp_path / "tiny.png", height=12, width=12)
    message = refused(site, tmp_path, capsys, [*rows, "broken.png,benign", "tiny.png,malignant"])
    assert "broken.png" in message and "tiny.png" in message and "32 pixels" in message


def test_an_existing_output_is_kept_without_overwrite(site, calibrated, tmp_path, capsys) -> None:
    before = (calibrated / "config.json").read_bytes()
    assert main(["--model", str(site["model"]), "--labels", str(site["root"] / "labels.csv"), "--output",
                 str(calibrated)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (calibrated / "config.json").read_bytes() == before


def lesion_images(root: Path, count: int) -> list[Path]:
    """`count` 64 x 96 grey PNGs with a dark lesion, its place and the background level varying."""
    from PIL import Image

    rows, columns = np.mgrid[0:64, 0:96]
    paths = []
    for index in range(count):
        rng = np.random.default_rng(index)
        image = rng.integers(40 + 4 * index, 120 + 4 * index, (64, 96))
        image[((rows - 32) / 14) ** 2 + ((columns - 30 - index) / 20) ** 2 <= 1] = 15
        paths.append(root / f"lesion_{index:02d}.png")
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def two_view_site(tmp_path_factory) -> dict:
    """A tiny two-view model (companions beside it, named by Hub-style ids) and its site calibration written,
    then moved elsewhere: the folder must carry what it needs."""
    import shutil

    from tests.helpers.demo_fixtures import save_tiny_lesion_model
    from training.export import set_two_views
    from training.export.refresh_code import refresh_code
    from usvcl_hf import UsvclConfig

    root = tmp_path_factory.mktemp("two_views")
    whole = spread_tiny_classifier(root / "models" / "whole")
    save_tiny_classifier(root / "models" / "crop", lesion_crop_margin=0.2, decision_threshold=0.7)
    save_tiny_lesion_model(root / "models" / "lesion", lesion_threshold=0.0)
    config = UsvclConfig.from_pretrained(whole)
    set_two_views(config, "someone/lesion", "someone/crop")
    config.save_pretrained(whole)
    refresh_code(whole)
    (root / "images").mkdir()
    images = lesion_images(root / "images", 2 * PER_CLASS)
    labels = np.arange(len(images)) % 2
    (root / "labels.csv").write_text("image,label,patient\n" + "".join(
        f"images/{path.name},{LABELS[label]},p{index // 2}\n" for index, (path, label) in
        enumerate(zip(images, labels))))
    assert main(["--model", str(whole), "--labels", str(root / "labels.csv"), "--output", str(root / "written"),
                 "--bootstrap", "20"]) == 0
    shutil.copytree(root / "written", root / "elsewhere" / "site_model")
    return {"root": root, "models": root / "models", "output": root / "elsewhere" / "site_model", "images": images}


def test_two_views_carry_their_companions_recalibrated(two_view_site) -> None:
    output, models = two_view_site["output"], two_view_site["models"]
    config = json.loads((output / "config.json").read_text())
    crop = json.loads((output / "crop_model" / "config.json").read_text())
    assert config["two_view_models"] == {"lesion_model": "lesion_model", "crop_model": "crop_model"}
    assert crop["site_calibration"] == config["site_calibration"]
    assert config["site_calibration"]["views"] == ["whole image", "lesion crop"]
    threshold = config["site_calibration"]["threshold"]
    assert (config["decision_threshold"] + crop["decision_threshold"]) / 2 == pytest.approx(threshold)
    for name in ("model.safetensors", "config.json"):
        assert (output / "lesion_model" / name).read_bytes() == (models / "lesion" / name).read_bytes()
    assert (output / "crop_model" / "model.safetensors").read_bytes() == (
        models / "crop" / "model.safetensors").read_bytes()


def test_two_view_pipeline_and_demo_use_the_folder_s_own_companions(two_view_site) -> None:
    from usvcl_hf.pipeline_usvcl import named_companions
    from usvcl_hf.runtime.clip_prediction import load_model

    output = two_view_site["output"]
    model, _ = load_model(output)  # as app.py loads it: its default companions become the folder's own
    assert named_companions(model) == {"lesion_model": str(output / "lesion_model"),
                                       "crop_model": str(output / "crop_model")}
    result = run_isolated(
        f"""
        from transformers import pipeline
        classify = pipeline(model={str(output)!r}, trust_remote_code=True)
        answer = classify({str(two_view_site["images"][0])!r})
        result = dict(threshold=answer["threshold"], crop=classify.crop_model.name_or_path)
        """,
        cwd=two_view_site["root"],
    )
    config = json.loads((output / "config.json").read_text())
    assert result["threshold"] == pytest.approx(config["site_calibration"]["threshold"])
    assert result["crop"] == str(output / "crop_model")


def test_the_demo_runs_a_one_view_site_model_alone(site, calibrated) -> None:
    from usvcl_hf.pipeline_usvcl import named_companions
    from usvcl_hf.runtime.clip_prediction import load_model

    assert named_companions(load_model(calibrated)[0]) == {}  # one view: no companions, the demo runs it alone


def test_images_unlike_the_training_images_are_refused(site, tmp_path, capsys) -> None:
    """A model whose OOD threshold every image exceeds (statistics of zeros, threshold 1e-6) refuses them all."""
    rows = good_rows(site, tmp_path)
    model = save_tiny_classifier(tmp_path / "ood_model", ood_components=2, ood_threshold=1e-6)
    (tmp_path / "labels.csv").write_text("image,label\n" + "".join(row + "\n" for row in rows))
    assert main(["--model", str(model), "--labels", str(tmp_path / "labels.csv"), "--output",
                 str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert f"refuses {len(rows)} files" in message and "not like the training images" in message
    assert not (tmp_path / "out").exists()
