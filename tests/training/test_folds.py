"""Cross-validation folds never share a patient between training, validation and test sides."""

from __future__ import annotations

import csv
import math

import datasets
import numpy as np
import pytest

from tests.helpers.real_data import DATA_ROOT, store_path
from training.finetune import check_no_leak, draw_label_subset, make_folds
from training.pretrain.train import without_test_rows

BUS_BRA = DATA_ROOT / "bus_bra"
BUS_BRA_STORE = store_path("bus_bra")
SPLIT_NAMES = {"1": "train", "0": "val"}  # valid_k: 1 training, 0 inner validation, NaN test


def assert_disjoint(folds, patient_ids: np.ndarray) -> None:
    """No patient on two sides of any fold (checked independently of `check_no_leak`)."""
    for fold in folds:
        train, val, test = (set(patient_ids[rows]) for rows in (fold.train, fold.val, fold.test))
        assert not train & test and not val & test and not train & val, fold.number


def bus_bra_metadata() -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """Labels, patient ids and official split columns from BUS-BRA's CSVs."""
    with (BUS_BRA / "bus_data.csv").open() as handle:
        patients = {row["ID"]: row["Case"] for row in csv.DictReader(handle)}
    with (BUS_BRA / "5-fold-cv.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    labels = np.array([int(row["Pathology"] == "malignant") for row in rows])
    patient_ids = np.array([patients[row["ID"]] for row in rows])
    splits = {
        k: np.array([SPLIT_NAMES.get(row[f"valid_{k}"].split(".")[0], "test") for row in rows]) for k in range(1, 6)
    }
    return labels, patient_ids, splits


@pytest.mark.skipif(not BUS_BRA.is_dir(), reason="BUS-BRA not available")
def test_bus_bra_official_folds_are_patient_disjoint() -> None:
    labels, patient_ids, splits = bus_bra_metadata()
    folds = make_folds(labels, patient_ids, splits, num_folds=5, val_fraction=0.2, seed=0)
    assert [fold.number for fold in folds] == [1, 2, 3, 4, 5]
    assert len(folds[0].test) == 376 and len(folds[0].train) + len(folds[0].val) == 1200 + 299  # README
    assert 0.1 < len(folds[0].val) / 1499 < 0.3
    assert_disjoint(folds, patient_ids)
    every_test_row = np.sort(np.concatenate([fold.test for fold in folds]))
    assert np.array_equal(every_test_row, np.arange(len(labels)))  # each image tested exactly once


@pytest.mark.skipif(not BUS_BRA_STORE.is_dir(), reason=f"BUS-BRA store not built in {BUS_BRA_STORE}")
def test_bus_bra_store_folds_are_patient_disjoint() -> None:
    import datasets

    store = datasets.load_from_disk(str(BUS_BRA_STORE)).select_columns(
        ["patient_id", "label", *(f"split_{k}" for k in range(1, 6))]
    )
    patient_ids = np.asarray(store["patient_id"]).astype(str)
    splits = {k: np.asarray(store[f"split_{k}"]).astype(str) for k in range(1, 6)}
    folds = make_folds(np.asarray(store["label"]), patient_ids, splits, 5, 0.2, seed=0)
    assert_disjoint(folds, patient_ids)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_group_folds_on_synthetic_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    patient_ids = np.repeat(np.arange(60), rng.integers(1, 5, 60)).astype(str)  # 1-4 images per patient
    labels = (rng.random(len(patient_ids)) < 0.35).astype(int)
    folds = make_folds(labels, patient_ids, None, num_folds=5, val_fraction=0.2, seed=seed)
    assert len(folds) == 5
    assert_disjoint(folds, patient_ids)
    for fold in folds:
        assert len(np.unique(labels[fold.test])) == 2 and len(np.unique(labels[fold.val])) == 2
        assert math.isclose(len(fold.val) / (len(fold.train) + len(fold.val)), 0.2, abs_tol=0.1)
        subset = draw_label_subset(fold.train, labels, patient_ids, 25, seed)
        assert set(subset) <= set(fold.train) and len(subset) >= 25
        assert not set(patient_ids[subset]) & set(patient_ids[fold.test])
        kept = set(patient_ids[subset])
        assert all(row in subset for row in fold.train if patient_ids[row] in kept)  # whole patients
    assert np.array_equal(np.sort(np.concatenate([f.test for f in folds])), np.arange(len(labels)))


@pytest.mark.skipif(not BUS_BRA.is_dir(), reason="BUS-BRA not available")
def test_bus_bra_official_validation_split_shares_patients() -> None:
    """Why `make_folds` redraws the inner validation split: the official one is not grouped by patient."""
    _, patient_ids, splits = bus_bra_metadata()
    assert set(patient_ids[splits[1] == "train"]) & set(patient_ids[splits[1] == "val"])


def test_leak_is_detected() -> None:
    from training.finetune import Fold

    patient_ids = np.array(["a", "b", "c"])
    with pytest.raises(ValueError, match="both train and test"):
        check_no_leak(Fold(1, np.array([0]), np.array([1]), np.array([0, 2])), patient_ids)


def test_pretraining_can_exclude_a_test_fold() -> None:
    splits = ["train", "test", "val", "test"]
    store = datasets.Dataset.from_dict({"patient_id": ["a", "b", "c", "d"], "split_1": splits})
    kept = without_test_rows(store, "split_1")
    assert kept["patient_id"] == ["a", "c"]
    assert without_test_rows(store, None)["patient_id"] == store["patient_id"]
    assert len(without_test_rows(store.remove_columns("split_1"), "split_1")) == len(store)  # clip stores: no column
