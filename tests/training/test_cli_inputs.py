"""Every `python -m training.<x>` names a missing input in one line and exits with status 2 (no traceback)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from tests.helpers.paths import REPO_ROOT

MISSING = "no_such_input_for_the_test"

# (what `python -m` runs, argv, the option the error names); MISSING is replaced by a path that does not exist
CASES = [
    ("training.export", ["--kind", "classifier", "--model-dir", MISSING, "--results", MISSING, "--output", "out"],
     "--model-dir"),
    ("training.export", ["--kind", "lesion", "--model-dir", "HERE", "--results", MISSING, "--output", "out"],
     "--results"),
    ("training.export", ["--kind", "backbone", "--model-dir", MISSING, "--output", "out"], "--model-dir"),
    ("training.export", ["--kind", "backbone", "--pretrain-dir", "HERE", "--output", "out"], "--pretrain-dir"),
    ("training.export.ood", ["--model", MISSING], "--model"),
    ("training.export.ood", ["--model", "HERE", "--bus-bra", MISSING], "--bus-bra"),
    ("training.publish", ["--model-dir", MISSING, "--repo-id", "org/name", "--dry-run", "out"], "--model-dir"),
    ("training.finetune.recalibrate", ["--folder", MISSING, "--store-path", "HERE"], "--folder"),
    ("training.finetune.recalibrate", ["--folder", "HERE", "--store-path", MISSING], "--store-path"),
    ("training.export.refresh", ["--folder", MISSING], "--folder"),
    ("training.export.refresh_code", [MISSING], "FOLDERS"),
    ("training.lesion.choices", ["--cv-run", MISSING, "--final-run", "HERE"], "--cv-run"),
    ("training.prepare_data.overlay_mask", ["--store", MISSING, "--output", "out"], "--store"),
    ("training.finetune.saliency_eval", ["--run-dir", MISSING, "--store", "HERE", "--masks", "HERE", "--output", "out"],
     "--run-dir"),
    ("training.finetune", ["--store-path", MISSING], "--store-path"),
    ("training.finetune", ["--config", MISSING], "--config"),
    ("training.pretrain", ["--store-paths", MISSING], "--store-paths"),
    ("training.pretrain", ["--config", MISSING], "--config"),
    ("training.lesion", ["--store-path", MISSING], "--store-path"),
    ("training.prepare_data", ["images", "--input", MISSING, "--output", "out"], "--input"),
    ("training.prepare_data", ["videos", "--input", "HERE", "--output", "out", "--metadata", MISSING], "--metadata"),
]


def entry_point(module: str):
    """The `main` that `python -m module` runs (a package's `__main__` imports it)."""
    loaded = importlib.import_module(module)
    if hasattr(loaded, "__path__"):
        loaded = importlib.import_module(f"{module}.__main__")
    return loaded.main


@pytest.mark.parametrize(("module", "argv", "option"), CASES, ids=[f"{m}:{o}" for m, _, o in CASES])
def test_missing_input_is_one_line_and_status_2(module, argv, option, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "absent" / MISSING
    argv = [str(missing) if item == MISSING else str(tmp_path) if item == "HERE" else item for item in argv]
    with pytest.raises(SystemExit) as stopped:
        entry_point(module)(argv)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"python -m {module}: error: {option}")
    assert lines[0].endswith(": no such file or folder") and str(tmp_path) in lines[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "a failed command left files behind"


def test_export_with_a_missing_model_dir_in_a_fresh_process(tmp_path):
    """The case a user met: one line on stderr (no traceback about repo ids), exit status 2, nothing written."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(
        [sys.executable, "-m", "training.export", "--kind", "classifier", "--model-dir", "runs/none/final_model",
         "--results", "runs/none/results.json", "--output", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "python -m training.export: error: --model-dir runs/none/final_model: no such file or folder"]
    assert "Traceback" not in completed.stdout + completed.stderr
    assert not (tmp_path / "out").exists()
