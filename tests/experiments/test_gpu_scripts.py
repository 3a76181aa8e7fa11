"""The lent-GPU helpers (run here on the CPU): store packing for the transfer, run sizing from a timed step, and
the choice among fine-tuning runs by validation AUC."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import datasets
import pytest
import torch

from tests.helpers.paths import REPO_ROOT
from tests.helpers.stores import make_labeled_store

REPO = REPO_ROOT
MAX_SIDE = 32


def test_pack_stores_keeps_rows_and_writes_small_jpegs(tmp_path) -> None:
    from tests.helpers.lesion_fixtures import add_square_masks

    source = tmp_path / "labeled"
    add_square_masks(make_labeled_store(n_patients=4, size=48)).save_to_disk(str(source))
    result = subprocess.run([sys.executable, "experiments/gpu/pack_stores.py", "--stores", str(source), "--output",
                             str(tmp_path / "packed"), "--max-side", str(MAX_SIDE)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"into {tmp_path / 'packed'}" in result.stdout
    original, packed = datasets.load_from_disk(str(source)), datasets.load_from_disk(str(tmp_path / "packed/labeled"))
    assert packed.column_names == original.column_names and packed["image_id"] == original["image_id"]
    image = packed[0]["image"]
    assert image.format == "JPEG" and min(image.size) == MAX_SIDE and image.mode == "L"
    assert packed[0]["mask"].tobytes() == original[0]["mask"].tobytes()  # lesion masks travel unchanged
    assert (tmp_path / "packed/labeled/summary.json").exists() == (source / "summary.json").exists()


def test_size_run_prints_bounded_steps_and_epochs(tmp_path) -> None:
    from experiments.gpu import size_run

    output = tmp_path / "sizing.json"
    result = subprocess.run([sys.executable, "experiments/gpu/size_run.py", "--budget-s", "60", "--backbone",
                             "resnet10t", "--image-size", "32", "--batch-size", "2", "--output", str(output)],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assignments = dict(item.split("=") for item in result.stdout.strip().splitlines()[-1].split())
    sizing = json.loads(output.read_text())
    assert int(assignments["STEPS"]) == sizing["steps"] and int(assignments["EPOCHS"]) == sizing["epochs"]
    assert size_run.STEP_LIMITS[0] <= sizing["steps"] <= size_run.STEP_LIMITS[1]
    assert size_run.EPOCH_LIMITS[0] <= sizing["epochs"] <= size_run.EPOCH_LIMITS[1]
    assert sizing["pretrain_step_s"] > 0 and sizing["finetune_step_s"] > 0
    assert sizing["pretrain_images_per_step"] == 2 * (1 + 16) + 111


def write_results(folder: Path, val_aucs: list[float], test_auc: float) -> Path:
    """A fine-tuning run's results.json with the given per-fold validation AUCs (and a test AUC to ignore)."""
    folder.mkdir(parents=True)
    folds = [{"fold": k, "val_auc": auc, "metrics": {"auc": {"value": test_auc}}} for k, auc in enumerate(val_aucs)]
    (folder / "results.json").write_text(json.dumps({"folds": folds}))
    return folder / "results.json"


def test_choose_by_validation_ignores_the_test_folds(tmp_path) -> None:
    low_lr = write_results(tmp_path / "lr3e-4", [0.84, 0.82], test_auc=0.70)
    high_lr = write_results(tmp_path / "lr1e-3", [0.80, 0.81], test_auc=0.95)
    output = tmp_path / "choice.json"
    result = subprocess.run([sys.executable, "experiments/choose_by_validation.py", str(high_lr), str(low_lr),
                             "--output", str(output)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "lr3e-4")
    choice = json.loads(output.read_text())
    assert choice["chosen"] == str(tmp_path / "lr3e-4")
    assert choice["mean_val_auc"] == pytest.approx({str(tmp_path / "lr3e-4"): 0.83, str(tmp_path / "lr1e-3"): 0.805})
    assert "choices" not in json.loads(low_lr.read_text())
    from experiments import choose_by_validation

    choose_by_validation.record_choice(choice, "learning rate")
    choose_by_validation.record_choice(choice, "learning rate")  # recorded once
    (recorded,) = json.loads(low_lr.read_text())["choices"]
    assert recorded["validation_only"] and recorded["candidates"] == {"lr3e-4": 0.83, "lr1e-3": 0.805}


def test_choose_by_validation_compares_on_the_folds_every_run_finished(tmp_path) -> None:
    from experiments import choose_by_validation

    complete = write_results(tmp_path / "complete", [0.70, 0.90, 0.90], test_auc=0.5)
    stopped = tmp_path / "stopped" / "folds_done.json"  # a run stopped after its first fold
    stopped.parent.mkdir()
    stopped.write_text(json.dumps([{"fold": 0, "val_auc": 0.75}]))
    choice = choose_by_validation.choose([complete, stopped])
    assert choice["folds"] == [0] and choice["chosen"] == str(stopped.parent)
    assert choice["mean_val_auc"] == pytest.approx({str(complete.parent): 0.70, str(stopped.parent): 0.75})


def test_choose_by_validation_records_in_the_file_compared(tmp_path) -> None:
    from experiments import choose_by_validation

    arm = write_results(tmp_path / "arm", [0.90, 0.88], test_auc=0.5).rename(tmp_path / "arm" / "arm_results.json")
    other = write_results(tmp_path / "other", [0.80, 0.81], test_auc=0.9)
    choice = choose_by_validation.choose([other, arm])
    assert choice["chosen"] == str(arm.parent)
    assert choose_by_validation.record_choice(choice, "schedule") == arm
    assert json.loads(arm.read_text())["choices"][0]["candidates"] == {"arm": 0.89, "other": 0.805}
    assert not (tmp_path / "arm" / "results.json").exists() and "choices" not in json.loads(other.read_text())


def test_choose_by_validation_needs_finished_folds(tmp_path) -> None:
    from experiments import choose_by_validation

    with pytest.raises(ValueError, match="no folds were finished"):
        choose_by_validation.choose([write_results(tmp_path / "empty", [], test_auc=0.5)])


@pytest.fixture(scope="module")
def tiny_payload(tmp_path_factory) -> Path:
    """A `.gpu_payload`-like folder: two tiny lung frame stores and a 5-fold labelled store named like the real ones."""
    from tests.helpers.lesion_fixtures import add_square_masks
    from training import synthetic

    payload = tmp_path_factory.mktemp("payload")
    for name, patients in (("covid_blues", 4), ("pocus", 3)):
        synthetic.make_frame_store({f"{name}{i}": 2 for i in range(patients)}, frames_per_video=3).save_to_disk(
            str(payload / "stores" / name))
    labeled = add_square_masks(make_labeled_store(n_patients=20, folds=5))
    labeled = labeled.add_column("video_id", list(labeled["patient_id"]))  # BUS-BRA's pseudo-clips: one per patient
    labeled.save_to_disk(str(payload / "stores" / "bus_bra"))
    return payload


def run_gpu_script(script: str, payload: Path, out: Path, runs: Path, progress_name: str = "progress.txt",
                   timeout_s: int = 900) -> str:
    """Run an experiments/gpu script with SMOKE=1 on the tiny payload; return its progress log."""
    result = subprocess.run(["bash", f"experiments/gpu/{script}"], cwd=REPO, capture_output=True, text=True,
                            timeout=timeout_s, env={**os.environ, "SMOKE": "1", "OUT": str(out), "RUNS": str(runs),
                                              "PY": sys.executable, "PAYLOAD": str(payload), "OMP_NUM_THREADS": "1"})
    progress = (out / progress_name).read_text() if (out / progress_name).exists() else ""
    assert result.returncode == 0, progress + result.stderr[-3000:]
    return progress


def packed_names(out: Path, archive: str = "gpu_runs.tar.gz") -> list[str]:
    """File names inside the script's $OUT/ARCHIVE."""
    with tarfile.open(out / archive) as packed:
        return packed.getnames()


def test_run_default_model_smoke(tiny_payload, tmp_path) -> None:
    """Every step (pretrain, three fine-tunings, choice, export, packing) on tiny stores, on a CPU."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    progress = run_gpu_script("run_default_model.sh", tiny_payload, out, runs)
    assert "all done" in progress
    choice = json.loads((runs / "lr_choice.json").read_text())
    assert choice["chosen"] == max(choice["mean_val_auc"], key=choice["mean_val_auc"].get)
    assert f"chosen on validation: {choice['chosen']}" in progress
    assert (out / "model.safetensors").read_bytes() == (runs / "export" / "model.safetensors").read_bytes()
    card = (runs / "export" / "README.md").read_text()
    assert "at CPU scale" in card and "**CPU-scale training**" in card  # the smoke run had no GPU
    names = packed_names(out)
    assert any(name.endswith("lr_choice.json") for name in names)
    assert not any(name.endswith(".safetensors") for name in names)


def test_run_paper_scale_smoke(tiny_payload, tmp_path) -> None:
    """PLAN=main: sizing, three pretrainings and four cross-validations on tiny stores, on a CPU."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    progress = run_gpu_script("run_paper_scale.sh", tiny_payload, out, runs)
    assert "all arms done" in progress and "sized: STEPS=" in progress
    names = packed_names(out)
    for arm in ("ft_random", "ft_hard_triplet", "ft_hard_triplet_mean_distance", "ft_info_nce"):
        assert any(name.endswith(f"{arm}/results.json") for name in names), arm


def test_folds_split_over_processes_pool_to_the_single_run(tiny_payload, tmp_path) -> None:
    """Folds split over processes (run_folds_parallel.sh), pooled here, give what one process over all folds gives."""
    from experiments import pool_predictions

    out, runs = tmp_path / "out", tmp_path / "runs"
    progress = run_gpu_script("run_folds_parallel.sh", tiny_payload, out, runs)
    assert "all parts done" in progress
    single = tmp_path / "single"
    smoke_args = ["--backbone", "resnet10t", "--image-size", "48", "--bootstrap-samples", "50", "--mixed-precision",
                  "no", "--num-epochs", "2", "--no-channels-last", "--num-workers", "0"]
    result = subprocess.run([sys.executable, "-m", "training.finetune", "--config",
                             "experiments/configs/finetune_gpu_default.yaml", "--store-path",
                             str(tiny_payload / "stores" / "bus_bra"), "--output-dir", str(single), "--init", "random",
                             "--learning-rate", "3e-4", "--no-final-model", *smoke_args, "--folds", "1", "2", "3", "4",
                             "5"], cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    expected = json.loads((single / "results.json").read_text())
    pooled = pool_predictions.pool([runs / "part0", runs / "part1", runs / "part2"])
    assert [fold["fold"] for fold in pooled["folds"]] == [1, 2, 3, 4, 5] and pooled["n_test"] == 40
    assert [fold["test_auc"] for fold in pooled["folds"]] == [fold["metrics"]["auc"]["value"]
                                                              for fold in expected["folds"]]
    for name, metric in expected["pooled"].items():  # predictions.csv holds every digit
        assert pooled["pooled"][name] == pytest.approx(metric, abs=1e-12), name
    with pytest.raises(ValueError, match="more than one part"):
        pool_predictions.pool([runs / "part0", runs / "part0"])


def test_lesion_smoke(tiny_payload, tmp_path) -> None:
    """The lesion segmenter's GPU script (fold 1 beside a final model, tiny backbone) on a CPU: weights and results."""
    from safetensors.torch import load_file

    out, runs = tmp_path / "out", tmp_path / "runs"
    progress = run_gpu_script("lesion.sh", tiny_payload, out, runs)
    assert "all done" in progress and "lesion_choices (rc 0)" in progress
    assert "lesion finished (rc 0)" in progress and "lesion_final finished (rc 0)" in progress
    weights = load_file(out / "lesion_model.safetensors")
    assert weights and all(v.dtype in (torch.float16, torch.int64) for v in weights.values())
    with tarfile.open(out / "lesion_runs.tar.gz") as packed:
        names = packed.getnames()
    for name in ("lesion/results.json", "lesion/predictions.csv", "lesion_final/final_model/config.json",
                 "lesion_final/combined_results.json", "lesion.log"):
        assert any(entry.endswith(name) for entry in names), name
    assert not any(entry.endswith(".safetensors") for entry in names)
    combined = json.loads((runs / "lesion_final" / "combined_results.json").read_text())
    assert [fold["fold"] for fold in combined["folds"]] == [1] and combined["folds"][0]["n_test_crops"] > 0
    config = json.loads((runs / "lesion_final" / "final_model" / "config.json").read_text())
    assert config["lesion_threshold"] == combined["folds"][0]["lesion_threshold"] == \
        combined["final_model"]["lesion_threshold"]
    assert combined["final_model"]["epochs"] == 2
    final_model = runs / "lesion_final" / "final_model"  # the bundling steps of docs/training.md 4c
    shutil.copyfile(out / "lesion_model.safetensors", final_model / "model.safetensors")
    from training import export

    exported = tmp_path / "usvcl-lesion-busbra"
    assert export.main(["--kind", "lesion", "--model-dir", str(final_model), "--results",
                        str(runs / "lesion_final" / "combined_results.json"), "--output", str(exported)]) == 0
    assert "fixed in\nadvance" in (exported / "README.md").read_text()


def test_run_imagenet_arms_smoke(tiny_payload, tmp_path) -> None:
    """Recipe search, all pretrainings, every arm and seed, the default candidate's weights, on tiny stores."""
    import torch
    from safetensors.torch import load_file

    import usvcl_hf

    out, runs = tmp_path / "out", tmp_path / "runs"
    progress = run_gpu_script("run_imagenet_arms.sh", tiny_payload, out, runs, timeout_s=1500)
    assert "all runs done" in progress
    recipe = json.loads((runs / "recipe_choice.json").read_text())
    assert recipe["chosen"] == max(recipe["mean_val_auc"], key=recipe["mean_val_auc"].get)
    assert f"recipe chosen on validation: {Path(recipe['chosen']).name.removeprefix('search_')}" in progress
    names = packed_names(out)
    for arm in ("ft_random_s42", "ft_lung_info_nce_s42", "ft_lung_hard_triplet_s42", "ft_busbra_s42",
                "ft_imagenet_s43", "ft_busbra_s43"):
        assert any(name.endswith(f"{arm}/predictions.csv") for name in names), arm
    busbra = json.loads((runs / "ft_busbra_s42/results.json").read_text())["config"]
    assert busbra["pretrained_path"].endswith("pretrain_busbra_{fold}/model")
    assert json.loads((runs / "pretrain_busbra_1/pretrain_config.json").read_text())["exclude_test_of"] == "split_1"
    assert json.loads((runs / "pretrain_busbra_all/pretrain_config.json").read_text())["exclude_test_of"] is None
    default = json.loads((runs / "default_choice.json").read_text())
    assert default["chosen"] == max(default["mean_val_auc"], key=default["mean_val_auc"].get)
    assert not any("lung" in run for run in default["mean_val_auc"])  # COVID-BLUES-derived: never shipped
    shards = runs / "default_model"  # config and shard index here (packed), the float32 shards in $OUT
    for shard in (out / "final_model").glob("*.safetensors"):
        (shards / shard.name).write_bytes(shard.read_bytes())
    model = usvcl_hf.UsvclForImageClassification.from_pretrained(shards)
    half = load_file(str(out / "model_fp16.safetensors"))
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(half[name].to(tensor.dtype), tensor, rtol=1e-2, atol=1e-3)


def test_label_efficiency_smoke(tiny_payload, tmp_path) -> None:
    """Both arms (ImageNet-init and random EfficientNet-Lite0), 2 sizes x 2 draws on fold 1, packed on its own."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    progress = run_gpu_script("label_efficiency.sh", tiny_payload, out, runs, "label_efficiency_progress.txt")
    assert "both arms done" in progress and "le_imagenet finished (rc 0)" in progress
    assert "le_random finished (rc 0)" in progress and not (out / "gpu_runs.tar.gz").exists()
    names = packed_names(out, "label_efficiency.tar.gz")
    for arm in ("le_imagenet", "le_random"):
        for name in ("label_efficiency.json", "label_efficiency_predictions.csv", "manifest.json", "results.json"):
            assert any(path.endswith(f"{arm}/{name}") for path in names), (arm, name)
        summary = json.loads((runs / arm / "label_efficiency.json").read_text())
        assert [size["num_labels"] for size in summary] == [4, 8]
        assert all(len(size["draws"]) == 2 for size in summary)
        config = json.loads((runs / arm / "results.json").read_text())["config"]
        assert config["max_steps"] == 2 and config["backbone"] == "tf_efficientnet_lite0" and config["num_workers"] == 1
