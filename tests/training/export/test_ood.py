"""Out-of-distribution score: the Gaussian model's maths, and `training.export.ood` end to end on tiny data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import app
from tests.helpers import export_models
from tests.helpers.paths import REPO_ROOT
from training import synthetic
from training.export import ood
from usvcl_hf.runtime.clip_prediction import load_model, predict_clip
from usvcl_hf.runtime.ood import clip_ood_score, ood_warning

PATIENTS = 15
LUNG_CLIPS = 2


def test_score_is_the_mahalanobis_distance_of_the_ppca_gaussian() -> None:
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(10, 10))
    features = rng.normal(size=(300, 10)) @ mixing + 3.0  # (n, F) correlated, off-centre
    density = ood.fit_density(features.astype(np.float32), num_components=4)
    directions = density.components.double().numpy()  # (k, F)
    covariance = (directions.T * density.variances.double().numpy()) @ directions + float(
        density.residual_variance) * (np.eye(10) - directions.T @ directions)  # U diag(l) U^T + s^2 (I - U U^T)
    queries = rng.normal(size=(5, 10)) * 4
    centred = queries - density.mean.double().numpy()
    expected = np.einsum("bi,ij,bj->b", centred, np.linalg.inv(covariance), centred) / 10
    got = density(torch.from_numpy(queries).float()).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3)
    assert abs(np.median(density(torch.from_numpy(features).float()).numpy()) - 1.0) < 0.3  # ~1 in distribution


def test_clip_score_and_warning() -> None:
    class Config:
        ood_threshold = 2.0

    assert clip_ood_score(np.array([0.5, 9.0, 1.0])) == 1.0  # the median: one odd frame does not flag a clip
    assert math.isnan(clip_ood_score(None)) and ood_warning(Config, math.nan) is None
    assert ood_warning(Config, 1.5) is None and "unlike the breast ultrasound images" in ood_warning(Config, 2.5)


def fake_bus_bra(folder: Path) -> Path:
    """bus_data.csv and Images/ of PATIENTS patients with one or two seeded grey images each."""
    (folder / "Images").mkdir(parents=True)
    rows = []
    for patient in range(PATIENTS):
        for side in ("l", "r")[: 1 + patient % 2]:
            name = f"bus_{patient:04d}-{side}"
            synthetic.write_grey_png(folder / "Images" / f"{name}.png", seed=len(rows), height=72, width=96)
            rows.append({"ID": name, "Case": patient})
    with open(folder / "bus_data.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["ID", "Case"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.mark.slow
def test_ood_command_stores_statistics_and_rates(tmp_path: Path) -> None:
    folder = export_models.export_tiny_classifier(tmp_path / "export")
    logits_before = json.loads((folder / "export_check.json").read_text())["outputs"]
    lung = tmp_path / "lung"
    lung.mkdir()
    clips = [synthetic.write_video(lung / f"clip{index}.mp4") for index in range(LUNG_CLIPS)]
    output = tmp_path / "ood.json"
    code = ood.main(["--model", str(folder), "--bus-bra", str(fake_bus_bra(tmp_path / "bus_bra")), "--lung-clips",
                     f"synthetic={lung}", "--components", "2", "--frames-per-clip", "2", "--output", str(output),
                     "--max-size-mb", str(export_models.TEST_MAX_MB)])
    assert code == 0
    record = json.loads(output.read_text())
    config = json.loads((folder / "config.json").read_text())
    assert config["ood_components"] == 2 and config["ood_threshold"] == pytest.approx(record["threshold"])
    assert sum(entry["groups"] for entry in record["bus_bra_false_alarms"].values()) == PATIENTS  # disjoint splits
    assert record["lung_detection"]["synthetic"]["clips"]["n"] == LUNG_CLIPS
    assert record["command"].startswith("python -m training.export.ood") and record["wall_time_s"] > 0
    assert json.loads((folder / "export_check.json").read_text())["outputs"] == logits_before  # classifier unchanged

    model, processor = load_model(folder)
    assert model.feature_density.mean.dtype == torch.float32 and model.feature_density.mean.abs().sum() > 0
    prediction = predict_clip(model, processor, clips[0])
    assert math.isfinite(prediction.ood_score) and prediction.frame_ood_scores.shape == (prediction.num_frames,)
    model.config.ood_threshold = prediction.ood_score / 2  # this clip is now "unlike the training images"
    flagged = predict_clip(model, processor, clips[0])
    assert flagged.ood_warning and "unlike the breast ultrasound images" in flagged.ood_warning
    assert flagged.ood_warning in app.summary_markdown(flagged, "tiny", 0.1)


@pytest.mark.slow
def test_ood_rates_go_into_the_model_folder_not_the_repository(tmp_path: Path, monkeypatch, capsys) -> None:
    """Without --output the rates land beside the statistics (MODEL/ood_results.json); nothing is written in the
    working directory or under the repository; --no-store without --output is refused in one line (status 2)."""
    folder = export_models.export_tiny_classifier(tmp_path / "export")
    lung = tmp_path / "lung"
    lung.mkdir()
    synthetic.write_video(lung / "clip0.mp4")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    repo_results = REPO_ROOT / "experiments" / "results" / "ood"
    before = sorted(repo_results.iterdir()) if repo_results.is_dir() else []
    argv = ["--model", str(folder), "--bus-bra", str(fake_bus_bra(tmp_path / "bus_bra")), "--lung-clips",
            f"synthetic={lung}", "--components", "2", "--frames-per-clip", "2",
            "--max-size-mb", str(export_models.TEST_MAX_MB)]
    capsys.readouterr()  # what the tiny export printed
    assert ood.main([*argv, "--no-store"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "python -m training.export.ood: error: --no-store leaves the model folder unchanged: give --output FILE "
        "for the rates"]
    assert ood.main(argv) == 0
    record = json.loads((folder / ood.OOD_RESULTS_FILE).read_text())
    assert json.loads((folder / "config.json").read_text())["ood_threshold"] == pytest.approx(record["threshold"])
    assert list(work.iterdir()) == []
    assert (sorted(repo_results.iterdir()) if repo_results.is_dir() else []) == before
