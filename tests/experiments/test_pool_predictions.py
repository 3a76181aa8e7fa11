"""`experiments/pool_predictions.py --results-json`: an arm split by folds over runs becomes one finetune-format
results.json (what `training.export` renders a card from) whose pooled numbers are those of the parts' predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments import pool_predictions
from tests.helpers.predictions import synthetic_predictions
from training import evaluation
from training.finetune.outputs import METRIC_NAMES


def write_part(folder: Path, folds: tuple[int, ...], final: bool, learning_rate: float = 5e-4) -> pd.DataFrame:
    """A finetune output folder over `folds` (the fields pooling reads), with a final model when `final`."""
    folder.mkdir(parents=True)
    predictions = synthetic_predictions(seed=0, strength=0.5, folds=folds)
    predictions.to_csv(folder / "predictions.csv", index=False)
    config = {"seed": 42, "bootstrap_samples": 100, "ece_bins": 10, "learning_rate": learning_rate,
              "folds": list(folds), "output_dir": str(folder), "final_model": final}
    fold_results = []
    for fold in folds:
        rows = predictions[predictions["fold"] == fold]
        auc = evaluation.auc(rows["label"].to_numpy(), rows["prob_malignant"].to_numpy())
        metrics = {name: {"value": auc if name == "auc" else 0.5} for name in METRIC_NAMES}
        fold_results.append({"fold": fold, "val_auc": 0.8, "threshold": 0.3 + fold / 100, "metrics": metrics})
    final_model = {"path": str(folder / "final_model") if final else None, "threshold": 0.4, "temperature": 1.3}
    results = {"config": config, "folds": fold_results, "command": f"finetune --folds {folds}", "commit": "abc1234",
               "machine": "a CPU", "wall_time_s": 10.0, "init": "imagenet", "final_model": final_model}
    (folder / "results.json").write_text(json.dumps(results))
    return predictions


def test_merged_results_pool_every_part(tmp_path) -> None:
    first = write_part(tmp_path / "part1", (1,), final=False)
    rest = write_part(tmp_path / "part2", (2, 3, 4, 5), final=True)
    parts = [tmp_path / "part1", tmp_path / "part2"]
    merged = pool_predictions.merged_results(parts)
    both = pd.concat([first, rest])
    assert [fold["fold"] for fold in merged["folds"]] == [1, 2, 3, 4, 5]
    assert merged["config"]["folds"] == [1, 2, 3, 4, 5]
    assert merged["pooled"]["auc"]["value"] == pytest.approx(
        evaluation.auc(both["label"].to_numpy(), both["prob_malignant"].to_numpy()), abs=1e-12)
    assert merged["final_model"]["path"].endswith("part2/final_model") and merged["wall_time_s"] == 20.0
    assert [part["folds"] for part in merged["parts"]] == [[1], [2, 3, 4, 5]]
    assert set(merged["mean_std"]) == set(METRIC_NAMES)


def test_parts_of_different_recipes_or_finals_are_refused(tmp_path) -> None:
    write_part(tmp_path / "a", (1,), final=False)
    write_part(tmp_path / "b", (2, 3), final=True, learning_rate=1e-3)
    write_part(tmp_path / "c", (4, 5), final=True, learning_rate=1e-3)
    with pytest.raises(ValueError, match="learning_rate"):
        pool_predictions.merged_results([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match="2 parts trained a final model; at most one may"):
        pool_predictions.merged_results([tmp_path / "b", tmp_path / "c"])


def test_an_arm_without_a_final_model_records_the_threshold_it_would_take(tmp_path) -> None:
    write_part(tmp_path / "a", (1, 2, 3), final=False)
    write_part(tmp_path / "b", (4, 5), final=False)
    merged = pool_predictions.merged_results([tmp_path / "a", tmp_path / "b"])
    assert merged["final_model"] == {"path": None, "threshold": pytest.approx(0.33), "temperature": 1.0,
                                     "calibration_bias": 0.0}


def test_choices_made_outside_the_runs_are_recorded_whole(tmp_path) -> None:
    write_part(tmp_path / "part1", (1, 2, 3, 4, 5), final=True)
    fixed = {"choice": "input size", "data": "none", "criterion": "compute", "validation_only": True}
    merged = pool_predictions.merged_results([tmp_path / "part1"], [fixed])
    assert merged["choices"][-1] == fixed
    with pytest.raises(ValueError, match="lacks"):
        pool_predictions.merged_results([tmp_path / "part1"], [{"choice": "input size"}])


def test_cli_writes_the_arm_results_and_its_figures(tmp_path) -> None:
    write_part(tmp_path / "part1", (1, 2), final=False)
    write_part(tmp_path / "part2", (3, 4, 5), final=True)
    out = tmp_path / "arm"
    out.mkdir()
    choice_files = []
    for name in ("input size", "loss"):  # two files, recorded in the order given
        choice_files.append(tmp_path / f"{name}.yaml")
        choice_files[-1].write_text(f"- {{choice: {name}, data: none, criterion: compute, validation_only: true}}\n")
    pool_predictions.main([str(tmp_path / "part1"), str(tmp_path / "part2"), "--output", str(out / "pooled.json"),
                           "--results-json", str(out / "arm_results.json"), "--choices", *map(str, choice_files)])
    merged = json.loads((out / "arm_results.json").read_text())
    assert [fold["fold"] for fold in merged["folds"]] == [1, 2, 3, 4, 5]
    assert [choice["choice"] for choice in merged["choices"]] == ["input size", "loss"]
    for name in ("roc", "reliability", "confusion"):
        assert (out / merged["figures"][name]).stat().st_size > 0, name


def test_commands_recorded_with_a_main_path_are_named_by_module() -> None:
    recorded = "/some/checkout/training/finetune/__main__.py --folds 1 --seed 3"
    assert pool_predictions.module_command(recorded) == "python -m training.finetune --folds 1 --seed 3"
    typed = "python -m training.finetune --folds 2"
    assert pool_predictions.module_command(typed) == typed


def write_final_run(folder: Path, folds: list[int], learning_rate: float = 5e-4, split_seed: int | None = None) -> None:
    """A `training.finetune --final-from` output: results.json with the final model and the folds it took."""
    folder.mkdir(parents=True)
    config = {"seed": 42, "bootstrap_samples": 100, "ece_bins": 10, "learning_rate": learning_rate,
              "folds": None, "output_dir": str(folder), "final_model": True, "final_from": ["a", "b"],
              "eval_boxes": None, "split_seed": split_seed}
    final = {"path": str(folder / "final_model"), "threshold": 0.35, "temperature": 1.7, "epochs": 9}
    (folder / "results.json").write_text(json.dumps({
        "config": config, "command": "finetune --final-from a b", "commit": "def5678", "wall_time_s": 30.0,
        "final_from": {"files": ["a", "b"], "folds": folds}, "final_model": final}))


def test_the_final_model_of_a_final_from_run_is_the_arms(tmp_path) -> None:
    write_part(tmp_path / "part1", (1, 2), final=False)
    write_part(tmp_path / "part2", (3, 4, 5), final=False)
    merged = pool_predictions.merged_results([tmp_path / "part1", tmp_path / "part2"])
    write_final_run(tmp_path / "final", [1, 2, 3, 4, 5])
    arm = pool_predictions.with_final_run(merged, tmp_path / "final")
    assert arm["final_model"] == {"path": str(tmp_path / "final" / "final_model"), "threshold": 0.35,
                                  "temperature": 1.7, "epochs": 9}
    assert arm["final_run"] == {"folder": str(tmp_path / "final"), "command": "finetune --final-from a b",
                                "commit": "def5678", "wall_time_s": 30.0}
    assert arm["pooled"] == merged["pooled"] and arm["folds"] == merged["folds"]
    write_final_run(tmp_path / "other_folds", [1, 2, 3])
    with pytest.raises(ValueError, match=r"choices of folds \[1, 2, 3\], not this arm's \[1, 2, 3, 4, 5\]"):
        pool_predictions.with_final_run(merged, tmp_path / "other_folds")
    write_final_run(tmp_path / "other_recipe", [1, 2, 3, 4, 5], learning_rate=1e-3)
    with pytest.raises(ValueError, match="learning_rate"):
        pool_predictions.with_final_run(merged, tmp_path / "other_recipe")
    with pytest.raises(ValueError, match="not a --final-from run"):
        pool_predictions.with_final_run(merged, tmp_path / "part2")
    write_final_run(tmp_path / "split_seed", [1, 2, 3, 4, 5], split_seed=7)  # a final run draws no inner splits
    assert pool_predictions.with_final_run(merged, tmp_path / "split_seed")["final_model"]["epochs"] == 9
