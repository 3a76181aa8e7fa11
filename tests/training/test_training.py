"""End-to-end: config loading, pretraining with kill-and-resume equivalence, fine-tuning, two-process runs."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from tests.helpers.paths import REPO_ROOT
from tests.helpers.stores import FINETUNE_CONFIG, make_labeled_store
from training import synthetic
from training.config import FinetuneConfig, PretrainConfig, build_parser, config_to_dict, flat_arguments, load_config

REPO = REPO_ROOT
PRETRAIN_CONFIG = REPO / "training/configs/test_tiny.yaml"
TOTAL_STEPS = 4
KILL_STEP = 2
PROCESS_TIMEOUT_S = 240
WEIGHT_TOLERANCE = 1e-6
POLL_S = 0.02


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """A frame store (4 patients x 2 videos x 3 frames) and a labelled image store on disk."""
    root = tmp_path_factory.mktemp("stores")
    synthetic.make_frame_store({f"p{i}": 2 for i in range(4)}, frames_per_video=3).save_to_disk(root / "frames")
    make_labeled_store().save_to_disk(root / "labeled")
    return {"frames": root / "frames", "labeled": root / "labeled"}


def environment() -> dict[str, str]:
    """Offline, single-threaded child processes that import the repository."""
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def pretrain_command(stores: dict[str, Path], output_dir: Path, *extra: str) -> list[str]:
    """`python -m training.pretrain` on the tiny stores."""
    return [sys.executable, "-m", "training.pretrain", "--config", str(PRETRAIN_CONFIG),
            "--store-paths", str(stores["frames"]), "--output-dir", str(output_dir),
            "--monitor-store", str(stores["labeled"]), "--max-steps", str(TOTAL_STEPS),
            "--checkpoint-every", str(KILL_STEP), "--selection", "monitor", "--holdout-patients", "1", *extra]


def run(command: list[str], **extra_env: str) -> subprocess.CompletedProcess:
    """Run to completion; fail with the output."""
    result = subprocess.run(command, cwd=REPO, env={**environment(), **extra_env}, capture_output=True, text=True,
                            timeout=PROCESS_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-12000:]
    return result


def max_weight_difference(first: Path, second: Path) -> float:
    """Largest absolute difference between two safetensors files with the same keys."""
    a, b = load_file(str(first)), load_file(str(second))
    assert a.keys() == b.keys()
    return max(float((a[key].double() - b[key].double()).abs().max()) for key in a)


def test_every_field_is_an_option_and_yaml_then_cli_wins(tmp_path) -> None:
    for config_class in (PretrainConfig, FinetuneConfig):
        help_text = build_parser(config_class, "").format_help()
        for arguments in flat_arguments(config_class):
            for field in dataclasses.fields(arguments):
                assert f"--{field.name}" in help_text and f"--{field.name.replace('_', '-')}" in help_text, field.name
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("batch_size: 7\nlearning_rate: 0.5\nstore_paths: [a]\n")
    config = load_config(PretrainConfig, ["--config", str(yaml_file), "--learning-rate", "0.25", "--resume"])
    assert (config.batch_size, config.learning_rate, config.store_paths, config.resume) == (7, 0.25, ["a"], True)
    finetune = load_config(FinetuneConfig, ["--num-labels", "25", "50", "--no-final-model", "--folds", "1", "2"])
    assert (finetune.train_sizes, finetune.final_model, finetune.folds) == ([25, 50], False, [1, 2])
    assert not load_config(FinetuneConfig, ["--channels-last", "--no-channels-last"]).channels_last
    yaml_file.write_text("backbone: resnet10t\nloss: info_nce\nbatch_size: 3\n")
    nested = load_config(PretrainConfig, ["--config", str(yaml_file), "--learning_rate", "0.5", "--margin", "0.2"])
    assert (nested.model.backbone, nested.model.loss, nested.model.margin) == ("resnet10t", "info_nce", 0.2)
    assert (nested.batch_size, nested.learning_rate) == (3, 0.5)
    flat = config_to_dict(nested)
    assert flat["backbone"] == "resnet10t" and flat["batch_size"] == 3 and "model" not in flat
    with pytest.raises(ValueError, match="loss"):
        load_config(PretrainConfig, ["--loss", "contrastive"])  # the model config validates its own fields
    yaml_file.write_text("not_a_field: 1\n")
    with pytest.raises(ValueError, match="unknown fields"):
        load_config(PretrainConfig, ["--config", str(yaml_file)])


@pytest.fixture(scope="module")
def pretrained(stores, tmp_path_factory) -> Path:
    """An uninterrupted pretraining run (its output folder)."""
    output_dir = tmp_path_factory.mktemp("pretrain") / "full"
    run(pretrain_command(stores, output_dir))
    return output_dir


def test_pretrain_outputs(pretrained) -> None:
    for name in ("model/config.json", "model/model.safetensors", "model/preprocessor_config.json", "history.json"):
        assert (pretrained / name).exists(), name
    names = sorted(path.name for path in (pretrained / "checkpoints").iterdir())
    assert names == [f"step_{KILL_STEP}", f"step_{TOTAL_STEPS}"]
    history = json.loads((pretrained / "history.json").read_text())
    steps = [record for record in history if "loss" in record]
    assert [record["step"] for record in steps] == list(range(1, TOTAL_STEPS + 1))
    assert all(record["images_per_s"] > 0 and record["lr"] > 0 for record in steps)
    assert any("probe_auc" in record and "knn_auc" in record for record in history)
    monitored = [record for record in history if "clip_map" in record]  # label-free, held-out patient
    assert monitored and all(0.0 <= record["clip_map"] <= 1.0 for record in monitored)
    assert {"alignment", "uniformity", "clip_recall_at_1"} <= monitored[-1].keys()
    assert (pretrained / "tb").is_dir()
    config = json.loads((pretrained / "model/config.json").read_text())
    assert config["image_size"] == 32 and config["model_type"] == "usvcl"


def test_kill_and_resume_reaches_the_same_weights(stores, pretrained, tmp_path) -> None:
    output_dir = tmp_path / "killed"
    process = subprocess.Popen(pretrain_command(stores, output_dir), cwd=REPO, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = output_dir / "checkpoints" / f"step_{KILL_STEP}"
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(POLL_S)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "the run ended before writing its first checkpoint"
    for later in (output_dir / "checkpoints").iterdir():  # as if killed right after step KILL_STEP
        if later.name != checkpoint.name:
            shutil.rmtree(later)
    shutil.rmtree(output_dir / "model", ignore_errors=True)
    result = run(pretrain_command(stores, output_dir, "--resume"))
    assert f"Resumed from {checkpoint}" in result.stdout + result.stderr
    final = f"checkpoints/step_{TOTAL_STEPS}/model.safetensors"
    assert max_weight_difference(pretrained / final, output_dir / final) <= WEIGHT_TOLERANCE
    model = "model/model.safetensors"
    assert max_weight_difference(pretrained / model, output_dir / model) <= WEIGHT_TOLERANCE
    history = json.loads((output_dir / "history.json").read_text())
    assert [r["loss"] for r in history if "loss" in r] == pytest.approx(
        [r["loss"] for r in json.loads((pretrained / "history.json").read_text()) if "loss" in r], abs=1e-6
    )


def test_wall_clock_limit_stops_early_and_still_saves_the_model(stores, tmp_path) -> None:
    output_dir = tmp_path / "short"
    result = run(pretrain_command(stores, output_dir, "--max-steps", "50", "--max-wall-minutes", "1e-9"))
    assert "Stopped at step 1: --max-wall-minutes" in result.stdout + result.stderr
    history = json.loads((output_dir / "history.json").read_text())
    assert [record["step"] for record in history if "stopped_at_wall_minutes" in record] == [1]
    assert max(record["step"] for record in history) == 1
    assert (output_dir / "model/model.safetensors").exists()


def test_finetune_two_folds_from_pretrained(stores, pretrained, tmp_path) -> None:
    from training import finetune

    output_dir = tmp_path / "finetune"
    finetune.main(["--config", str(FINETUNE_CONFIG), "--store-path", str(stores["labeled"]), "--output-dir",
                   str(output_dir), "--pretrained-path", str(pretrained / "model")])
    results = json.loads((output_dir / "results.json").read_text())
    for key in ("command", "commit", "machine", "wall_time_s", "init", "config", "folds", "pooled", "mean_std",
                "figures", "final_model"):
        assert key in results, key
    assert [fold["fold"] for fold in results["folds"]] == [1, 2]
    metric_names = {"auc", "sensitivity", "specificity", "accuracy", "ece_before", "ece_after"}
    for fold in results["folds"]:
        assert {"n_train", "n_val", "n_test", "threshold", "temperature", "calibration_bias"} <= fold.keys()
        assert set(fold["metrics"]) == metric_names
        for metric in fold["metrics"].values():
            assert metric["ci_low"] <= metric["value"] <= metric["ci_high"]
    assert set(results["pooled"]) == metric_names and set(results["mean_std"]) == metric_names
    for figure in ("roc", "reliability", "confusion"):
        assert (output_dir / results["figures"][figure]).stat().st_size > 0
    with (output_dir / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(fold["n_test"] for fold in results["folds"])
    assert {"image_id", "patient_id", "fold", "label", "prob_malignant"} <= rows[0].keys()
    check_validation_predictions(output_dir / "val_predictions.csv", results["folds"], rows)
    final = json.loads((Path(results["final_model"]["path"]) / "config.json").read_text())
    assert final["decision_threshold"] == pytest.approx(results["final_model"]["threshold"])
    assert final["calibration_temperature"] == pytest.approx(results["final_model"]["temperature"])
    assert final["calibration_bias"] == pytest.approx(results["final_model"]["calibration_bias"])
    assert final["init_from_imagenet"] is False
    assert (Path(results["final_model"]["path"]) / "preprocessor_config.json").exists()
    assert "| pooled |" in (output_dir / "results.md").read_text()
    folds_done = json.loads((output_dir / "folds_done.json").read_text())
    assert folds_done == results["folds"]
    manifest = json.loads((output_dir / "manifest.json").read_text())
    assert {key: manifest[key] for key in ("command", "commit", "machine")} == {
        key: results[key] for key in ("command", "commit", "machine")}
    assert {"predictions.csv", "results.json", "config.yaml"} <= set(manifest["files"])
    assert yaml.safe_load((output_dir / "config.yaml").read_text()) == results["config"]
    assert results["mean_val_auc"] == pytest.approx(np.mean([fold["val_auc"] for fold in results["folds"]]))
    assert all(entry["validation_only"] for entry in results["selection"])


def test_recalibrate_fits_temperature_and_bias_on_the_final_holdout(stores, tmp_path) -> None:
    """An export calibrated with a temperature only (as before the bias existed) gets temperature and bias fitted
    on its final model's holdout: the NLL there drops, the decisions stay the same, the weights are untouched, and
    results.json and the card say what was done; a second run refuses."""
    import torch

    import usvcl_hf
    from training import evaluation
    from training.export import export_classifier, set_decision_rule
    from training.export.refresh import rewrite_classifier_folder
    from training.finetune import recalibrate
    from training.finetune.data import load_labeled_data
    from training.finetune.train import final_split

    run_dir, folder = tmp_path / "run", tmp_path / "export"
    result = run([sys.executable, "-m", "training.finetune", "--config", str(FINETUNE_CONFIG), "--store-path",
                  str(stores["labeled"]), "--output-dir", str(run_dir), "--init", "random", "--folds", "1",
                  "--max-steps", "1", "--final-holdout-fraction", "0.5"])  # a holdout no model separates
    assert result.returncode == 0, result.stderr[-2000:]
    export_classifier(Path(json.loads((run_dir / "results.json").read_text())["final_model"]["path"]),
                      run_dir / "results.json", folder)
    old_temperature, old_threshold = 1.7, 0.4  # a temperature-only export

    def temperature_only(model) -> None:
        set_decision_rule(model.config, old_temperature, old_threshold)

    rewrite_classifier_folder(folder, temperature_only)
    weights = (folder / "model.safetensors").read_bytes()
    with torch.no_grad():
        old_model = usvcl_hf.UsvclForImageClassification.from_pretrained(folder).eval()
        pixels = torch.randn(64, 1, old_model.config.image_size, old_model.config.image_size,
                             generator=torch.Generator().manual_seed(0))
        before = old_model(pixel_values=pixels)
    assert recalibrate.main(["--folder", str(folder), "--store-path", str(stores["labeled"])]) == 0
    model = usvcl_hf.UsvclForImageClassification.from_pretrained(folder).eval()
    config, results = model.config, json.loads((folder / "results.json").read_text())
    with torch.no_grad():
        after = model(pixel_values=pixels)
    raw = before.calibrated_logits * old_temperature  # (64, 2): the classifier's own scores
    expected = raw / config.calibration_temperature + torch.tensor([0.0, config.calibration_bias])
    torch.testing.assert_close(after.calibrated_logits, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(after.logits.argmax(1), before.logits.argmax(1))  # the threshold moved with the calibration
    final = results["final_model"]
    assert (final["temperature"], final["calibration_bias"], final["threshold"]) == (
        config.calibration_temperature, config.calibration_bias, config.decision_threshold)
    previous = final["recalibrated"]["previous_temperature"], final["recalibrated"]["previous_threshold"]
    assert previous == (old_temperature, old_threshold)
    data = load_labeled_data(str(stores["labeled"]), config.image_size, config.resize_mode)
    run_config = recalibrate.run_config(results, str(stores["labeled"]))
    assert final["recalibrated"]["holdout_images"] == len(final_split(run_config, data)[1])
    assert final["recalibrated"]["nll_after"] <= final["recalibrated"]["nll_before"]
    holdout = recalibrate.holdout_logits(folder, run_config)  # the final model's own holdout, uncalibrated
    assert evaluation.fit_calibration(*holdout) == pytest.approx((config.calibration_temperature,
                                                                  config.calibration_bias))
    assert (folder / "model.safetensors").read_bytes() == weights
    assert "(the calibration shipped)" in (folder / "README.md").read_text()  # the card re-rendered with it
    assert recalibrate.main(["--folder", str(folder), "--store-path", str(stores["labeled"])]) == 1


def check_validation_predictions(path: Path, folds: list[dict], test_rows: list[dict]) -> None:
    """`val_predictions.csv` holds each fold's inner validation images, none of its test images, scored by the
    chosen epoch: its AUC is the fold's `val_auc` (the selection criterion) and its threshold the fold's."""
    from training import evaluation

    with path.open() as handle:
        val_rows = list(csv.DictReader(handle))
    for fold in folds:
        mine = [row for row in val_rows if int(row["fold"]) == fold["fold"]]
        tested = {row["patient_id"] for row in test_rows if int(row["fold"]) == fold["fold"]}
        assert len(mine) == fold["n_val"] and not tested & {row["patient_id"] for row in mine}
        labels = np.array([int(row["label"]) for row in mine])
        scores = np.array([float(row["prob_uncalibrated"]) for row in mine])
        assert evaluation.auc(labels, scores) == pytest.approx(fold["val_auc"], abs=1e-6)
        assert [float(row["threshold"]) for row in mine] == pytest.approx([fold["threshold"]] * len(mine))


def test_split_seed_shares_the_inner_validation_between_training_seeds(stores, pretrained, tmp_path) -> None:
    from training.finetune.cli import prepare_run

    def folds(**overrides):
        config = FinetuneConfig(**{**yaml.safe_load(FINETUNE_CONFIG.read_text()), **overrides},
                                store_path=str(stores["labeled"]), output_dir=str(tmp_path / "run"),
                                pretrained_path=str(pretrained / "model"))
        return [(fold.number, fold.val.tolist(), fold.test.tolist()) for fold in prepare_run(config).folds]

    assert folds(seed=1, split_seed=7) == folds(seed=2, split_seed=7)
    assert folds(seed=1) == folds(seed=3, split_seed=1)  # unset: the training seed draws the splits
    assert folds(seed=1) != folds(seed=2)


def test_step_schedule_counts_optimizer_steps() -> None:
    from training import finetune
    from training.config import FinetuneConfig

    by_epochs = finetune.step_schedule(FinetuneConfig(), loader_steps=7, num_epochs=4)
    assert by_epochs == (7, 28, 4, 1)
    for loader_steps in (2, 13):  # 50 labels and 400 labels get the same number of updates
        steps_per_pass, total, passes, every = finetune.step_schedule(FinetuneConfig(max_steps=60), loader_steps, 5)
        assert total == 60 and (passes - 1) * steps_per_pass < 60 <= passes * steps_per_pass
        assert passes // every in (5, 6) or every == 1


def test_label_efficiency_writes_every_draw_and_a_ci_over_draws(stores, tmp_path) -> None:
    from training import finetune

    output_dir = tmp_path / "label_efficiency"
    finetune.main(["--config", str(FINETUNE_CONFIG), "--store-path", str(stores["labeled"]), "--output-dir",
                   str(output_dir), "--init", "random", "--backbone", "resnet10t", "--image-size", "32", "--folds",
                   "1", "--num-labels", "4", "8", "--label-draws", "2", "--max-steps", "3", "--no-final-model"])
    summary = json.loads((output_dir / "label_efficiency.json").read_text())
    with (output_dir / "label_efficiency_predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    n_test = json.loads((output_dir / "results.json").read_text())["folds"][0]["n_test"]
    assert len(rows) == 2 * 2 * n_test and {"num_labels", "draw", "image_id", "prob_malignant"} <= rows[0].keys()
    for size in summary:
        draw_aucs = [draw["pooled_auc"] for draw in size["draws"]]
        assert size["auc_mean"] == pytest.approx(np.mean(draw_aucs))
        assert size["auc_std"] == pytest.approx(np.std(draw_aucs, ddof=1))
        assert size["auc_ci_low"] <= size["auc_mean"] <= size["auc_ci_high"]


@pytest.mark.parametrize(("precision", "device_type", "native", "warns"), [
    ("bf16", "cpu", False, True),  # emulated bf16: the one case that warns
    ("bf16", "cpu", True, False),
    ("bf16", "cuda", False, False),
    ("no", "cpu", False, False),
    ("fp16", "cuda", False, False),
])
def test_emulated_bf16_warning_only_for_bf16_on_a_cpu_without_it(precision, device_type, native, warns) -> None:
    from training.common import emulated_bf16_warning

    warning = emulated_bf16_warning(precision, device_type, native)
    assert (warning is not None) == warns
    if warns:
        assert "--mixed-precision no" in warning and "AVX-512 BF16" in warning


def test_finetune_bf16_channels_last_saves_a_standard_model(stores, tmp_path) -> None:
    import torch

    import usvcl_hf
    from training.common import cpu_has_native_bf16

    output_dir = tmp_path / "bf16_cl"  # own process: Accelerate's precision is fixed once per process
    result = run([sys.executable, "-m", "training.finetune", "--config", str(FINETUNE_CONFIG), "--store-path",
         str(stores["labeled"]), "--output-dir", str(output_dir), "--init", "random", "--backbone", "resnet18",
         "--image-size", "32", "--folds", "1", "--mixed-precision", "bf16", "--channels-last"])
    # the warning is logged exactly where this CPU emulates bf16 (same machine as the child process)
    assert ("torch emulates bf16" in result.stderr) == (not cpu_has_native_bf16())
    results = json.loads((output_dir / "results.json").read_text())
    assert results["config"]["channels_last"] is True and results["config"]["mixed_precision"] == "bf16"
    assert np.isfinite(results["folds"][0]["metrics"]["auc"]["value"])
    final_dir = Path(results["final_model"]["path"])
    for name, tensor in load_file(str(final_dir / "model.safetensors")).items():
        assert tensor.dtype in (torch.float32, torch.int64), name  # weights stay float32 under bf16 autocast
        assert tensor.is_contiguous(), name
    model = usvcl_hf.UsvclForImageClassification.from_pretrained(final_dir).eval()
    logits = model(pixel_values=torch.zeros(2, 1, model.config.image_size, model.config.image_size)).logits
    assert logits.shape == (2, 2) and bool(logits.isfinite().all())


def test_two_process_pretrain_and_finetune(stores, tmp_path) -> None:
    # `accelerate launch --cpu --num_processes 2` starts ONE process unless mpirun is set up; torchrun's launcher
    # (--multi_gpu) with ACCELERATE_USE_CPU=1 gives a real 2-process gloo run on a CPU-only machine.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]
    pretrain_dir = tmp_path / "pretrain2"
    run([*launch, *pretrain_command(stores, pretrain_dir)[2:]], ACCELERATE_USE_CPU="1")
    assert (pretrain_dir / "model/model.safetensors").exists()
    assert len(list((pretrain_dir / "checkpoints" / f"step_{TOTAL_STEPS}").glob("random_states_*.pkl"))) == 2
    finetune_dir = tmp_path / "finetune2"
    run([*launch, "training.finetune", "--config", str(FINETUNE_CONFIG), "--store-path", str(stores["labeled"]),
         "--output-dir", str(finetune_dir), "--pretrained-path", str(pretrain_dir / "model"), "--folds", "1",
         "--no-final-model"], ACCELERATE_USE_CPU="1")
    results = json.loads((finetune_dir / "results.json").read_text())
    assert [fold["fold"] for fold in results["folds"]] == [1]
    assert results["folds"][0]["n_test"] == len(list(csv.DictReader((finetune_dir / "predictions.csv").open())))


def test_usvcl_commit_names_the_code_where_git_cannot(monkeypatch) -> None:
    from training.provenance import git_commit

    monkeypatch.setenv("USVCL_COMMIT", "d550fa3")
    assert git_commit() == "d550fa3"
    monkeypatch.delenv("USVCL_COMMIT")
    assert git_commit() not in ("", "d550fa3")


def test_recorded_commands_name_the_module_not_a_path_of_the_machine(monkeypatch) -> None:
    from training.provenance import run_command

    monkeypatch.setattr(sys, "argv", [str(Path(__file__).parent / "__main__.py"), "--folds", "1", "--seed", "3"])
    assert run_command("training.finetune") == "python -m training.finetune --folds 1 --seed 3"
