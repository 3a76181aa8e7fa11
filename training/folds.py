"""Patient-grouped cross-validation folds, inner validation splits and label-efficiency subsets."""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

TRAIN, VAL, TEST = "train", "val", "test"
SPLITS = ("folds", "cross_device")  # `--split`: the official (or grouped) folds, or one split by scanner
# BUS-BRA's `Device` values (prefixes) of the scanners a cross-device split tests on; it trains on the others (GE)
CROSS_DEVICE_TEST = ("Toshiba Aplio 300", "U-Systems")


@dataclasses.dataclass
class Fold:
    """Row indices of one cross-validation fold (1-based `number`)."""

    number: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def inner_split(
    rows: np.ndarray, labels: np.ndarray, patient_ids: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split `rows` into (train, validation) by patient, stratified by label; validation ≈ `fraction` of rows."""
    n_splits = max(2, round(1.0 / fraction))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_part, val_part = next(splitter.split(np.zeros(len(rows)), labels[rows], patient_ids[rows]))
    return rows[train_part], rows[val_part]


def make_folds(
    labels: np.ndarray,
    patient_ids: np.ndarray,
    split_columns: dict[int, np.ndarray] | None,
    num_folds: int,
    val_fraction: float,
    seed: int,
) -> list[Fold]:
    """Test folds from the official `split_k` columns when present (rows marked "test"), else
    `StratifiedGroupKFold` by patient stratified by label. In both cases the inner validation split is drawn here,
    seeded and grouped by patient, from the fold's non-test rows: BUS-BRA's official `valid_k` validation images
    share patients with its training images (e.g. 210 of 278 validation patients in fold 1), so using them would
    let model selection, threshold and temperature see training patients. Raises `ValueError` if any patient
    crosses train/val/test."""
    if split_columns:
        outer = [(number, np.flatnonzero(column != TEST), np.flatnonzero(column == TEST))
                 for number, column in split_columns.items()]
    else:
        splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        outer = [(number, train_val, test) for number, (train_val, test)
                 in enumerate(splitter.split(np.zeros(len(labels)), labels, patient_ids), start=1)]
    folds = []
    for number, train_val, test in outer:
        train, val = inner_split(train_val, labels, patient_ids, val_fraction, seed + number)
        folds.append(Fold(number, np.sort(train), np.sort(val), np.sort(test)))
    for fold in folds:
        check_no_leak(fold, patient_ids)
    return folds


def check_no_leak(fold: Fold, patient_ids: np.ndarray) -> None:
    """Raise `ValueError` if a patient has rows on two sides of `fold`."""
    sides = {name: set(patient_ids[getattr(fold, name)]) for name in (TRAIN, VAL, TEST)}
    for first, second in ((TRAIN, TEST), (VAL, TEST), (TRAIN, VAL)):
        shared = sides[first] & sides[second]
        if shared:
            raise ValueError(f"fold {fold.number}: patients {sorted(shared)[:5]} are in both {first} and {second}.")


def draw_label_subset(
    rows: np.ndarray, labels: np.ndarray, patient_ids: np.ndarray, size: int, seed: int
) -> np.ndarray:
    """About `size` rows of `rows`, whole patients in seeded random order, until both classes are present."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for patient in rng.permutation(np.unique(patient_ids[rows])):
        if len(chosen) >= size and len(np.unique(labels[chosen])) == 2:
            break
        chosen.extend(rows[patient_ids[rows] == patient].tolist())
    return np.sort(np.asarray(chosen, dtype=int))



def on_test_device(devices: np.ndarray, test_devices: tuple[str, ...] = CROSS_DEVICE_TEST) -> np.ndarray:
    """`(n,)` bool: the rows whose scanner name starts with one of `test_devices`."""
    return np.array([str(device).startswith(test_devices) for device in devices], dtype=bool)


def cross_device_sides(
    devices: np.ndarray | None, patient_ids: np.ndarray, test_devices: tuple[str, ...] = CROSS_DEVICE_TEST
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(training-side rows, test rows, patients with images on both sides) of the split by scanner: test = the
    `test_devices` rows; a patient with images on both sides keeps only its test images (patient-disjoint)."""
    if devices is None:
        raise ValueError("--split cross_device needs a store with a `device` column: rebuild it with "
                         "`python -m training.prepare_data images` (BUS-BRA's Device is read automatically).")
    test = on_test_device(devices, test_devices)
    if not test.any() or test.all():
        raise ValueError(f"--split cross_device: the store's devices {sorted(set(devices.tolist()))} do not split "
                         f"into {list(test_devices)} and others.")
    spanning = sorted(set(patient_ids[test]) & set(patient_ids[~test]))
    train_side = ~test & ~np.isin(patient_ids, spanning)
    return np.flatnonzero(train_side), np.flatnonzero(test), spanning


def cross_device_folds(
    labels: np.ndarray, patient_ids: np.ndarray, devices: np.ndarray | None, val_fraction: float, seed: int
) -> list[Fold]:
    """One fold (number 1): trained on the other scanners, its inner validation drawn by patient from them as
    `make_folds` draws it (seed + 1), tested on the `CROSS_DEVICE_TEST` scanners."""
    train_val, test, _ = cross_device_sides(devices, patient_ids)
    train, val = inner_split(train_val, labels, patient_ids, val_fraction, seed + 1)
    fold = Fold(1, np.sort(train), np.sort(val), np.sort(test))
    check_no_leak(fold, patient_ids)
    return [fold]


def split_summary(devices: np.ndarray | None, patient_ids: np.ndarray, folds: list[Fold]) -> dict:
    """results.json `split`: images per scanner on each side of each fold, and (cross-device) the patients
    with images on both sides."""
    summary: dict = {"folds": {}}
    if devices is None:
        return summary
    for fold in folds:
        summary["folds"][fold.number] = {
            side: {str(name): int(count) for name, count in zip(*np.unique(devices[getattr(fold, side)],
                                                                           return_counts=True))}
            for side in (TRAIN, VAL, TEST)}
    return summary
