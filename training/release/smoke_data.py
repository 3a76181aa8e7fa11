"""The smoke run's data: a tiny synthetic folder in BUS-BRA's layout and one synthetic lung clip per lung folder.

`Images/bus_NNNN-l.png` (speckle with a bright disc lesion, brighter and larger for malignant cases), `Masks/
mask_NNNN-l.png` (the disc), `bus_data.csv` (ID, Case, Pathology, Device, BBOX) and `5-fold-cv.csv` (ID, Pathology,
kFold, valid_1..valid_5), one image per patient, both classes in every fold. No real data.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

PATIENTS = 30
FOLDS = 5
HEIGHT, WIDTH = 48, 64
DEVICES = ("Scanner A", "Scanner B")
CLIP_FRAMES, CLIP_FPS = 6, 10


def lesion_image(rng: np.random.Generator, malignant: bool) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 speckle with a disc lesion, and the disc's (H, W) bool mask."""
    image = rng.integers(40, 110, (HEIGHT, WIDTH)).astype(np.uint8)
    radius = rng.uniform(0.2, 0.28 if malignant else 0.2 + 0.04) * HEIGHT
    centre = rng.uniform(0.4, 0.6) * HEIGHT, rng.uniform(0.35, 0.65) * WIDTH
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
    mask = (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius**2
    image[mask] = 230 if malignant else 180
    return image, mask


def box_text(mask: np.ndarray) -> str:
    """BUS-BRA's BBOX cell, `[x, y, width, height]` of the mask."""
    rows, columns = np.nonzero(mask)
    return f"[{columns.min()},{rows.min()},{columns.max() - columns.min() + 1},{rows.max() - rows.min() + 1}]"


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows with the first row's keys as the header."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_bus_bra(folder: Path, seed: int = 0) -> Path:
    """The synthetic BUS-BRA-shaped folder (see the module docstring)."""
    rng = np.random.default_rng(seed)
    (folder / "Images").mkdir(parents=True)
    (folder / "Masks").mkdir()
    data, folds = [], []
    for case in range(1, PATIENTS + 1):
        name, malignant, fold = f"bus_{case:04d}-l", case % 2 == 1, (case - 1) // 2 % FOLDS + 1
        pathology = "malignant" if malignant else "benign"
        image, mask = lesion_image(rng, malignant)
        Image.fromarray(image).save(folder / "Images" / f"{name}.png")
        Image.fromarray(mask).convert("1").save(folder / "Masks" / f"mask_{case:04d}-l.png")
        data.append({"ID": name, "Case": case, "Pathology": pathology, "Device": DEVICES[case % 3 == 0],
                     "BBOX": box_text(mask)})
        valid = {f"valid_{k}": "NaN" if k == fold else ("0" if case % 5 == 0 else "1") for k in range(1, FOLDS + 1)}
        folds.append({"ID": name, "Pathology": pathology, "kFold": fold, **valid})
    write_csv(folder / "bus_data.csv", data)
    write_csv(folder / "5-fold-cv.csv", folds)
    return folder


def write_lung_clip(folder: Path, seed: int = 0) -> Path:
    """One short synthetic grey clip (`clip.mp4`) in `folder`."""
    from usvcl_hf.runtime.pyav_frames import write_clip

    folder.mkdir(parents=True, exist_ok=True)
    frames = np.random.default_rng(seed).integers(0, 256, (CLIP_FRAMES, HEIGHT, WIDTH)).astype(np.uint8)
    return write_clip(folder / "clip.mp4", frames, CLIP_FPS)


def write_smoke_data(root: Path, bus_bra: str = "bus_bra", lung_folders: tuple[str, ...] = ()) -> Path:
    """`root/<bus_bra>` and a clip in each `root/<lung folder>`; returns the BUS-BRA-shaped folder."""
    for seed, name in enumerate(lung_folders):
        write_lung_clip(root / name, seed)
    return write_bus_bra(root / bus_bra)


__all__ = ["write_bus_bra", "write_lung_clip", "write_smoke_data"]
