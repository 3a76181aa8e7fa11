"""Overlay masking: thin bright strokes are replaced, broad bright tissue is kept; the store CLI keeps every row."""

from __future__ import annotations

import json

import datasets
import numpy as np
from PIL import Image

from tests.helpers.stores import make_labeled_store
from training.prepare_data import overlay_mask

BACKGROUND_LEVEL = 90
SPECKLE_SPREAD = 20


def tissue_with_text(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(64, 96)` grey speckle with a white 1-px "text" stroke and a broad bright region; returns (image, stroke,
    broad) masks."""
    rng = np.random.default_rng(seed)
    image = rng.normal(BACKGROUND_LEVEL, SPECKLE_SPREAD / 3, (64, 96)).clip(0, 255)
    stroke = np.zeros(image.shape, dtype=bool)
    stroke[50, 10:60] = True  # a horizontal stroke, like a letter's bar
    stroke[44:57, 20] = True  # and a vertical one
    broad = np.zeros(image.shape, dtype=bool)
    broad[5:35, 60:90] = True  # bright tissue: bright over an area
    image[broad] = 235
    image[stroke] = 255
    return image.astype(np.uint8), stroke, broad


def test_thin_bright_strokes_are_replaced_by_the_local_background() -> None:
    image, stroke, broad = tissue_with_text()
    cleaned, mask = overlay_mask.mask_overlays(image)
    assert mask[stroke].all()
    assert np.abs(cleaned[stroke].astype(int) - BACKGROUND_LEVEL).max() <= SPECKLE_SPREAD
    margin = overlay_mask.BACKGROUND_WINDOW // 2  # within this of its edge, a sharp-edged region's corners can go
    interior = np.zeros_like(broad)
    interior[5 + margin:35 - margin, 60 + margin:90 - margin] = True
    assert not mask[interior].any()
    np.testing.assert_array_equal(cleaned[~mask], image[~mask])


def test_an_image_without_overlays_is_left_alone() -> None:
    image = np.full((40, 40), 120, dtype=np.uint8)
    cleaned, mask = overlay_mask.mask_overlays(image)
    assert not mask.any()
    np.testing.assert_array_equal(cleaned, image)


def test_cli_writes_a_masked_store_with_the_same_rows(tmp_path) -> None:
    source = tmp_path / "store"
    make_labeled_store(n_patients=4).save_to_disk(str(source))
    output, examples = tmp_path / "masked", tmp_path / "examples.png"
    overlay_mask.main(["--store", str(source), "--output", str(output), "--examples", str(examples)])
    original, masked = datasets.load_from_disk(str(source)), datasets.load_from_disk(str(output))
    assert masked.column_names == original.column_names and len(masked) == len(original)
    assert masked["image_id"] == original["image_id"] and masked["label"] == original["label"]
    assert masked[0]["image"].size == original[0]["image"].size
    summary = json.loads((output / "overlay_mask.json").read_text())
    assert summary["images"] == len(original) and 0 <= summary["mean_masked_share"] <= 1
    assert Image.open(examples).size[1] == overlay_mask.EXAMPLE_COUNT * overlay_mask.EXAMPLE_HEIGHT
    assert not (tmp_path / "masked.partial").exists()
