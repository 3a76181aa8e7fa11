"""The cross-device split (`training.finetune --split cross_device`) and the store's `device` column."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from tests.helpers.paths import REPO_ROOT as REPO
from tests.helpers.stores import labeled_png
from training import synthetic
from training.folds import CROSS_DEVICE_TEST, cross_device_folds, cross_device_sides
from training.prepare_data import main as prepare_main

FINETUNE_CONFIG = REPO / "training/configs/test_tiny_finetune.yaml"
GE, TOSHIBA, U_SYSTEMS = "GE Logiq 5 @10-12MHz", "Toshiba Aplio 300 @12-14 MHz", "U-Systems @10-14MHz"


def device_of(patient: int) -> str:
    """Patients 0-11 on GE, 12-15 on Toshiba, 16-17 on U-Systems."""
    return GE if patient < 12 else (TOSHIBA if patient < 16 else U_SYSTEMS)


def make_device_store(n_patients: int = 18, images_per_patient: int = 2, size: int = 40) -> datasets.Dataset:
    """A tiny BUS-BRA-like store with a `device` column and official folds; malignant images carry a bright square."""

    rng = np.random.default_rng(0)
    columns: dict[str, list] = {name: [] for name in ("image", "image_id", "patient_id", "label", "split_1",
                                                      "device")}
    for patient in range(n_patients):
        label = patient % 2
        for image in range(images_per_patient):
            columns["image"].append(labeled_png(rng, label, size))
            columns["image_id"].append(f"img_{patient}_{image}")
            columns["patient_id"].append(f"p{patient}")
            columns["label"].append(label)
            columns["split_1"].append("test" if patient % 3 == 0 else "train")
            columns["device"].append(device_of(patient))
    features = datasets.Features({
        "image": datasets.Image(), "image_id": datasets.Value("string"), "patient_id": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["benign", "malignant"]), "split_1": datasets.Value("string"),
        "device": datasets.Value("string")})
    return datasets.Dataset.from_dict(columns, features=features)


def test_prepare_data_keeps_the_device_column(tmp_path: Path) -> None:
    """`--device-column` (BUS-BRA: `Device`, read automatically) gives the store each image's scanner."""
    images = tmp_path / "in" / "Images"
    images.mkdir(parents=True)
    rows = [("bus_0001-l", "1", "benign", GE), ("bus_0002-l", "2", "malignant", TOSHIBA)]
    for seed, (image_id, *_) in enumerate(rows):
        synthetic.write_grey_png(images / f"{image_id}.png", seed=seed)
    (tmp_path / "in" / "bus_data.csv").write_text(
        "ID,Case,Pathology,Device\n" + "".join(",".join(row) + "\n" for row in rows), encoding="utf-8")
    (tmp_path / "in" / "5-fold-cv.csv").write_text(
        "ID,kFold,valid_1\nbus_0001-l,1,NaN\nbus_0002-l,2,1\n", encoding="utf-8")
    assert prepare_main(["images", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "store"),
                         "--workers", "1"]) == 0
    store = datasets.load_from_disk(str(tmp_path / "store"))
    assert store["device"] == [GE, TOSHIBA]


def test_a_store_without_devices_has_no_device_column(tmp_path: Path) -> None:
    root = synthetic.make_image_class_folder(tmp_path / "in")
    assert prepare_main(["images", "--input", str(root), "--output", str(tmp_path / "store"), "--workers", "1"]) == 0
    assert "device" not in datasets.load_from_disk(str(tmp_path / "store")).column_names


def test_cross_device_split_is_patient_disjoint_and_by_scanner() -> None:
    store = make_device_store()
    devices, patients = np.asarray(store["device"]), np.asarray(store["patient_id"])
    labels = np.asarray(store["label"])
    (fold,) = cross_device_folds(labels, patients, devices, val_fraction=0.25, seed=0)
    assert set(devices[fold.test]) == {TOSHIBA, U_SYSTEMS}
    assert set(devices[np.concatenate([fold.train, fold.val])]) == {GE}
    sides = [set(patients[rows]) for rows in (fold.train, fold.val, fold.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert len(fold.train) + len(fold.val) + len(fold.test) == len(store)


def test_a_patient_on_both_sides_is_counted_and_kept_on_the_test_side_only() -> None:
    devices = np.array([GE, GE, TOSHIBA, GE, TOSHIBA])
    patients = np.array(["a", "b", "b", "c", "d"])
    train_side, test, spanning = cross_device_sides(devices, patients)
    assert spanning == ["b"]
    assert train_side.tolist() == [0, 3] and test.tolist() == [2, 4]


def test_cross_device_needs_a_device_column_and_both_sides() -> None:
    with pytest.raises(ValueError, match="device"):
        cross_device_sides(None, np.array(["a"]))
    with pytest.raises(ValueError, match="do not split"):
        cross_device_sides(np.array([GE, GE]), np.array(["a", "b"]))
    assert all(any(name.startswith(prefix) for prefix in CROSS_DEVICE_TEST) for name in (TOSHIBA, U_SYSTEMS))


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_finetune_cross_device_writes_every_output_with_devices(tmp_path: Path) -> None:
    """A tiny run: predictions (with `device`) of the test scanners only, inner validation from GE, results.json
    naming the split and the count of patients on both sides, and a final model trained without the test scanners."""
    from training.config import FinetuneConfig
    from training.finetune.cli import main as finetune_main
    from training.finetune.data import load_labeled_data
    from training.finetune.train import final_split

    make_device_store().save_to_disk(tmp_path / "store")
    finetune_main(["--config", str(FINETUNE_CONFIG), "--store-path", str(tmp_path / "store"), "--output-dir",
                   str(tmp_path / "run"), "--init", "random", "--split", "cross_device", "--max-steps", "1",
                   "--final-holdout-fraction", "0.3"])
    run = tmp_path / "run"
    predictions, validation = read_rows(run / "predictions.csv"), read_rows(run / "val_predictions.csv")
    assert {row["device"] for row in predictions} == {TOSHIBA, U_SYSTEMS} and len(predictions) == 12
    assert {row["device"] for row in validation} == {GE}
    results = json.loads((run / "results.json").read_text())
    assert results["split"]["name"] == "cross_device" and results["split"]["patients_on_both_sides"] == 0
    assert results["split"]["folds"]["1"]["test"] == {TOSHIBA: 8, U_SYSTEMS: 4}
    assert (run / "config.yaml").is_file() and Path(results["final_model"]["path"]).is_dir()
    config = FinetuneConfig(store_path=str(tmp_path / "store"), split="cross_device", final_holdout_fraction=0.3)
    data = load_labeled_data(str(tmp_path / "store"), 40, "pad")
    train, holdout = final_split(config, data)
    assert set(data.devices[np.concatenate([train, holdout])]) == {GE}


def test_site_calibration_draws_on_a_tiny_bus_bra_like_folder(tmp_path: Path) -> None:
    """`experiments.cross_device.site_calibration`: the Toshiba rows only, patient-grouped halves, one row per draw
    and evaluated image, and a table from them (`experiments.device_tables.site_calibration_table`)."""
    import pandas as pd

    from experiments.cross_device.site_calibration import main as site_main
    from experiments.device_tables import site_calibration_table
    from tests.helpers.demo_fixtures import save_tiny_classifier, write_png

    (tmp_path / "bus_bra" / "Images").mkdir(parents=True)
    lines = ["ID,Case,Pathology,Device"]
    for index in range(48):
        device = TOSHIBA if index < 44 else GE
        image_id = f"bus_{index:04d}-l"
        write_png(tmp_path / "bus_bra" / "Images" / f"{image_id}.png", seed=index)
        lines.append(f"{image_id},{index // 2},{('benign', 'malignant')[index % 2]},{device}")
    (tmp_path / "bus_bra" / "bus_data.csv").write_text("\n".join(lines) + "\n")
    model = save_tiny_classifier(tmp_path / "model", decision_threshold=0.6, threshold_in_logits=True)
    assert site_main(["--model", str(model), "--data", str(tmp_path / "bus_bra"), "--output", str(tmp_path / "out"),
                      "--draws", "2"]) == 0
    draws = pd.read_csv(tmp_path / "out" / "draws.csv", dtype={"patient_id": str})
    assert set(draws["draw"]) == {0, 1} and set(draws["device"]) == {TOSHIBA}
    for _, part in draws.groupby("draw"):
        assert part["image_id"].is_unique and 0 < len(part) < 44
        assert part["fit_images"].iloc[0] + len(part) == 44
    assert (draws["threshold_model"] == 0.6).all()
    assert "| difference |" in site_calibration_table(draws, n_boot=20)
