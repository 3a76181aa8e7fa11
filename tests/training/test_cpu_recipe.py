"""docs/training.md's quick CPU recipe, end to end on tiny data: BUS-BRA-like folder -> store -> fine-tuning with
cross-validation and a final model -> exported classifier -> out-of-distribution statistics -> `predict_clip`.

The same commands as the recipe; only the data (a tiny BUS-BRA-like folder, synthetic clips) and the model size
(`training/configs/test_tiny_finetune.yaml`, resnet18 at 64 px, one epoch) are smaller; 64 px, not 32, so that a
last batch of one image still has 2x2 features for batch norm.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import export_models
from tests.helpers.paths import REPO_ROOT
from training import synthetic

TINY_FINETUNE = REPO_ROOT / "training" / "configs" / "test_tiny_finetune.yaml"
PATIENTS = 30
FOLDS = 5
TIMEOUT_S = 1200


def fake_bus_bra(folder: Path) -> Path:
    """A BUS-BRA-shaped folder: Images/, bus_data.csv (ID, Case, Pathology), 5-fold-cv.csv (kFold, valid_k)."""
    (folder / "Images").mkdir(parents=True)
    data_rows, fold_rows = [], []
    for patient in range(PATIENTS):
        name, pathology, fold = f"bus_{patient:04d}-l", ("benign", "malignant")[patient % 2], 1 + patient % FOLDS
        synthetic.write_grey_png(folder / "Images" / f"{name}.png", seed=patient, height=72, width=96)
        data_rows.append({"ID": name, "Case": patient, "Pathology": pathology})
        valid = {f"valid_{k}": "NaN" if k == fold else ("0" if patient % 3 == 0 else "1") for k in range(1, 6)}
        fold_rows.append({"ID": name, "Pathology": pathology, "kFold": fold, **valid})
    for file_name, rows in (("bus_data.csv", data_rows), ("5-fold-cv.csv", fold_rows)):
        with open(folder / file_name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return folder


def run(*arguments: str) -> None:
    """`python -m ...` from the repository root; fail with its output."""
    completed = subprocess.run([sys.executable, "-m", *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=TIMEOUT_S)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]


@pytest.mark.slow
def test_quick_cpu_recipe_end_to_end(tmp_path: Path) -> None:
    bus_bra = fake_bus_bra(tmp_path / "bus_bra")
    store, finetuned, exported = tmp_path / "stores" / "bus_bra", tmp_path / "runs" / "quick", tmp_path / "export"
    lung = tmp_path / "lung"
    lung.mkdir()
    synthetic.write_video(lung / "clip.mp4")
    run("training.prepare_data", "images", "--input", str(bus_bra), "--output", str(store))
    run("training.finetune", "--config", str(TINY_FINETUNE), "--store-path", str(store), "--init", "random",
        "--backbone", "resnet18", "--image-size", "64", "--final-model", "--output-dir", str(finetuned))
    run("training.export", "--kind", "classifier", "--model-dir", str(finetuned / "final_model"), "--results",
        str(finetuned / "results.json"), "--output", str(exported), "--max-size-mb", str(export_models.TEST_MAX_MB))
    run("training.export.ood", "--model", str(exported), "--bus-bra", str(bus_bra), "--lung-clips", f"lung={lung}",
        "--components", "2", "--output", str(tmp_path / "ood.json"), "--max-size-mb", str(export_models.TEST_MAX_MB))

    results = json.loads((finetuned / "results.json").read_text())
    assert len(results["folds"]) == FOLDS
    config = json.loads((exported / "config.json").read_text())
    assert config["threshold_in_logits"] and config["ood_threshold"] > 0
    from usvcl_hf.runtime.clip_prediction import load_model, predict_clip

    model, processor = load_model(exported)
    prediction = predict_clip(model, processor, [bus_bra / "Images" / "bus_0000-l.png"])
    assert prediction.label in ("benign", "malignant") and prediction.ood_score > 0
