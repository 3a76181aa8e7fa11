"""Patient-grouped cross-validation folds, inner validation splits and label-efficiency subsets."""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

TRAIN, VAL, TEST = "train", "val", "test"


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

