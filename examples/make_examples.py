"""Make the demo's example files from BUS-BRA (see examples/README.md for the citation and licence).

Writes, under this folder:
- `images/`: 4 BUS-BRA images copied as PNG: the first 2 benign and the first 2 malignant images of
  `bus_data.csv` (file order), one image per patient (the fixed rule: walk the CSV in order, skip a patient
  already used, stop at 2 of each class).
- `clips/`: 2 short simulated sweeps (~3 s, 10 fps, 224 x 224, H.264 via PyAV), one benign, one malignant,
  from the next unused image of each class: a slow pan and zoom across the image with fresh multiplicative
  speckle in every frame. They are not real ultrasound video (no public breast ultrasound video exists); they
  only show how the demo handles a clip.
- `LICENSE-BUS-BRA.txt`: the dataset's copyright and permission notice, which must accompany copies.

Usage:
    python examples/make_examples.py [--bus-bra ../shared/data/bus_bra] [--out examples]
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from usvcl_hf.runtime.pyav_frames import write_clip

DEFAULT_OUT = Path(__file__).resolve().parent
DEFAULT_BUS_BRA = DEFAULT_OUT.parents[1] / "shared" / "data" / "bus_bra"  # ../shared/data next to the repository
CLASSES = ("benign", "malignant")
IMAGES_PER_CLASS = 2
CLIPS_PER_CLASS = 1
CLIP_SIZE = 224
CLIP_FPS = 10
CLIP_SECONDS = 3.0
ZOOM_START, ZOOM_END = 1.0, 1.3  # the view narrows from the whole image to 1/1.3 of it
PAN_FRACTION = 0.15  # horizontal pan of the view centre, as a share of the image width, left to right
SPECKLE_LOOKS = 12.0  # gamma-distributed multiplicative speckle: mean 1, variance 1 / looks
SPECKLE_BLUR = 1.2  # Gaussian blur (pixels) of the speckle field, so it looks granular rather than pixel noise
CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"
CRF = "30"
SEED = 0
LICENCE_NAME = "LICENSE-BUS-BRA.txt"


def pick_images(csv_path: Path) -> dict[str, list[str]]:
    """IDs per class by the fixed rule: CSV order, one image per patient, images first, then clip sources."""
    wanted = IMAGES_PER_CLASS + CLIPS_PER_CLASS
    chosen: dict[str, list[str]] = {name: [] for name in CLASSES}
    used_patients: set[str] = set()
    with csv_path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            pathology, patient = row["Pathology"], row["Case"]
            if pathology in chosen and patient not in used_patients and len(chosen[pathology]) < wanted:
                chosen[pathology].append(row["ID"])
                used_patients.add(patient)
    for name, ids in chosen.items():
        if len(ids) < wanted:
            raise SystemExit(f"{csv_path}: only {len(ids)} {name} images found, {wanted} needed")
    return chosen


def gaussian_blur(field: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float array (edges reflected)."""
    radius = max(1, int(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(field, radius, mode="reflect")
    rows = np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="valid"), 0, rows)


def sweep_frames(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`(T, 224, 224)` uint8 frames: pan + zoom over `image` (H, W) with fresh speckle in each frame."""
    height, width = image.shape
    frame_count = round(CLIP_SECONDS * CLIP_FPS)
    source = Image.fromarray(image)
    frames = np.empty((frame_count, CLIP_SIZE, CLIP_SIZE), dtype=np.uint8)
    for index in range(frame_count):
        progress = index / max(1, frame_count - 1)
        zoom = ZOOM_START + (ZOOM_END - ZOOM_START) * progress
        side = min(height, width) / zoom  # square view, shrinking as the probe "zooms in"
        centre_x = width / 2 + (progress - 0.5) * PAN_FRACTION * width
        centre_y = height / 2
        left = float(np.clip(centre_x - side / 2, 0, width - side))
        top = float(np.clip(centre_y - side / 2, 0, height - side))
        view = source.resize((CLIP_SIZE, CLIP_SIZE), Image.BICUBIC, box=(left, top, left + side, top + side))
        speckle = rng.gamma(SPECKLE_LOOKS, 1.0 / SPECKLE_LOOKS, size=(CLIP_SIZE, CLIP_SIZE))
        speckle = gaussian_blur(speckle, SPECKLE_BLUR)
        speckle /= speckle.mean()
        frames[index] = np.clip(np.asarray(view, dtype=np.float64) * speckle, 0, 255).astype(np.uint8)
    return frames


def write_mp4(path: Path, frames: np.ndarray) -> None:
    """Encode `(T, H, W)` uint8 grey frames as H.264 MP4 with PyAV."""
    write_clip(path, frames, CLIP_FPS, codec=CODEC, pixel_format=PIXEL_FORMAT, options={"crf": CRF, "threads": "1"})


def make_examples(bus_bra: Path, out: Path) -> list[Path]:
    """Copy the images and make the clips; return the written paths."""
    chosen = pick_images(bus_bra / "bus_data.csv")
    image_dir, clip_dir = out / "images", out / "clips"
    image_dir.mkdir(parents=True, exist_ok=True)
    clip_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    licence = out / LICENCE_NAME
    shutil.copyfile(bus_bra / "LICENSE.txt", licence)
    written = [licence]
    for pathology in CLASSES:
        ids = chosen[pathology]
        for image_id in ids[:IMAGES_PER_CLASS]:
            target = image_dir / f"{pathology}_{image_id}.png"
            shutil.copyfile(bus_bra / "Images" / f"{image_id}.png", target)
            written.append(target)
        for image_id in ids[IMAGES_PER_CLASS:]:
            with Image.open(bus_bra / "Images" / f"{image_id}.png") as image:
                grey = np.asarray(image.convert("L"))
            target = clip_dir / f"{pathology}_{image_id}_sweep.mp4"
            write_mp4(target, sweep_frames(grey, rng))
            written.append(target)
    return written


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bus-bra", type=Path, default=DEFAULT_BUS_BRA, help="BUS-BRA folder (bus_data.csv, Images/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: this folder)")
    args = parser.parse_args()
    written = make_examples(args.bus_bra, args.out)
    total = sum(path.stat().st_size for path in written)
    for path in written:
        print(f"{path} ({path.stat().st_size / 1024:.0f} KiB)")
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
