"""training.export --kind lesion: a Hub folder that loads as float32, gives the recorded outputs and has a card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers.lesion_fixtures import make_masked_store
from training.export import main
from training.lesion.train import LesionTrainConfig, training_function


@pytest.fixture(scope="module")
def lesion_run(tmp_path_factory):
    """A tiny cross-validated lesion run (2 folds + final model) on synthetic masks."""
    root = tmp_path_factory.mktemp("lesion_run")
    make_masked_store(n_patients=20).save_to_disk(str(root / "store"))
    training_function(LesionTrainConfig(
        store_path=str(root / "store"), output_dir=str(root / "run"), folds=[1, 2], init="random",
        backbone="test_efficientnet", image_size=48, decoder_channels=[16, 8], num_epochs=1, batch_size=8,
        bootstrap_samples=50, crop_margin=2, min_crop_side=8))
    return root / "run"


def test_export_lesion_folder(lesion_run, tmp_path, capsys) -> None:
    from usvcl_hf import LesionSegmentationModel
    from usvcl_hf.runtime.lesion import load_lesion_model

    output = tmp_path / "usvcl-lesion-test"
    assert main(["--kind", "lesion", "--model-dir", str(lesion_run / "final_model"), "--results",
                 str(lesion_run / "results.json"), "--output", str(output)]) == 0
    assert f"Exported the lesion to {output.resolve()}" in capsys.readouterr().err
    config = json.loads((output / "config.json").read_text())
    assert config["dtype"] == "float32" and config["model_type"] == "usvcl_lesion"
    results = json.loads((lesion_run / "results.json").read_text())
    assert config["lesion_threshold"] == pytest.approx(results["final_model"]["lesion_threshold"])
    model, processor = load_lesion_model(output)
    assert next(model.parameters()).dtype == torch.float32
    check = json.loads((output / "export_check.json").read_text())
    pixels = torch.from_numpy(np.random.default_rng(check["inputs"]["pixel_values"]["seed"]).standard_normal(
        check["inputs"]["pixel_values"]["shape"]).astype(np.float32))
    with torch.no_grad():
        probability = LesionSegmentationModel.from_pretrained(output).eval()(pixels).lesion_probability
    np.testing.assert_allclose(probability.numpy(), check["outputs"]["pixel_values"]["lesion_probability"], atol=1e-4)
    card = (output / "README.md").read_text()
    pooled = results["pooled"]["metrics"]["dice"]
    assert f"Dice {pooled['value']:.3f} [{pooled['ci_low']:.3f}, {pooled['ci_high']:.3f}]" in card
    assert "pipeline_tag: image-segmentation" in card and "license: cc-by-4.0" in card
    assert (output / "model.safetensors").stat().st_size < 20 * 2**20 and processor.image_size == 48


def test_export_lesion_needs_a_lesion_results_file(lesion_run, tmp_path, capsys) -> None:
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"folds": []}))
    assert main(["--kind", "lesion", "--model-dir", str(lesion_run / "final_model"), "--results", str(bad),
                 "--output", str(tmp_path / "out")]) == 1
    assert "training/lesion" in capsys.readouterr().err
    assert main(["--kind", "lesion", "--output", str(tmp_path / "out")]) == 1


def test_results_table_is_rebuilt_from_the_predictions(lesion_run) -> None:
    from experiments import lesion_report

    table = lesion_report.run_table(lesion_run)
    results = json.loads((lesion_run / "results.json").read_text())
    pooled = next(line for line in table.splitlines() if line.startswith("| pooled |"))
    assert f"| {results['pooled']['metrics']['dice']['value']:.3f} [" in pooled
    assert f"| {results['pooled']['metrics']['presence']['auc']['value']:.3f} [" in pooled
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:4]] == ["1", "2"]
    assert results["commit"] in table


def test_results_table_pools_a_run_split_into_parts(lesion_run, tmp_path) -> None:
    import pandas as pd

    from experiments import lesion_report

    predictions = pd.read_csv(lesion_run / "predictions.csv")
    results = json.loads((lesion_run / "results.json").read_text())
    for fold in (1, 2):
        part = tmp_path / "split" / f"part{fold}"
        part.mkdir(parents=True)
        predictions[predictions["fold"] == fold].to_csv(part / "predictions.csv", index=False)
        (part / "results.json").write_text(json.dumps({**results, "final_model": {"path": None}}))
    whole, split = lesion_report.run_table(lesion_run), lesion_report.run_table(tmp_path / "split")
    assert split.splitlines()[:5] == whole.splitlines()[:5]  # header, rule, folds 1-2 and pooled
    assert [line.startswith(f"Run (folds {fold}):") for fold, line in zip((1, 2), split.splitlines()[-2:])] == [
        True, True]
    assert "Final model" in whole and "Final model" not in split
    with pytest.raises(FileNotFoundError, match=r"no predictions\.csv"):
        lesion_report.run_table(tmp_path)
