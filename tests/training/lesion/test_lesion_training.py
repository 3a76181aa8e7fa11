"""Lesion data and training: masks in the store, lesion-free crops, Dice / IoU, and a tiny cross-validated run."""

from __future__ import annotations

import csv
import json

import datasets
import numpy as np
import pytest
import torch

from tests.helpers.lesion_fixtures import TINY_LESION_TRAINING, make_bus_bra_folder, make_masked_store
from training.lesion.data import CROP, LESION, LesionDataset, augment_on_device, example_items, free_window, normalise
from training.lesion.train import LesionTrainConfig, overlap_scores, training_function
from usvcl_hf import UsvclImageProcessor


def test_prepare_data_adds_masks_at_the_stored_size(tmp_path) -> None:
    from training.prepare_data import main

    root = make_bus_bra_folder(tmp_path / "bus_bra")
    assert main(["images", "--input", str(root), "--output", str(tmp_path / "store"), "--workers", "1",
                 "--stored-size", "40"]) == 0
    store = datasets.load_from_disk(str(tmp_path / "store"))
    for row in store:
        image, mask = row["image"], row["mask"]
        assert mask.size == image.size and min(image.size) == 40
        original = np.asarray(datasets.Image().decode_example(
            {"path": str(root / "Masks" / f"mask_{row['image_id'].removeprefix('bus_')}.png"), "bytes": None}))
        assert abs(np.asarray(mask).mean() - (original > 0).mean()) < 0.05  # the same lesion, only resized


@pytest.mark.parametrize("seed", range(5))
def test_free_windows_never_touch_the_mask(seed) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((60, 80), dtype=bool)
    top, left = rng.integers(5, 30), rng.integers(5, 40)
    mask[top : top + 20, left : left + 25] = True
    for draw in (None, np.random.default_rng(seed + 100)):
        window = free_window(mask, margin=3, min_side=8, rng=draw)
        assert window is not None
        low_row, low_column, high_row, high_column = window
        assert 0 <= low_row < high_row <= 60 and 0 <= low_column < high_column <= 80
        assert min(high_row - low_row, high_column - low_column) >= 8
        grown = np.zeros_like(mask)
        grown[max(0, top - 3) : top + 23, max(0, left - 3) : left + 28] = True
        assert not grown[low_row:high_row, low_column:high_column].any()
    full = np.ones((60, 80), dtype=bool)
    assert free_window(full, margin=3, min_side=8) is None
    assert free_window(np.zeros((60, 80), dtype=bool), margin=3, min_side=8) == (0, 0, 60, 80)


def test_overlap_scores() -> None:
    truth = np.zeros((10, 10), dtype=bool)
    truth[:5] = True
    predicted = np.zeros_like(truth)
    predicted[:5, :5] = True
    assert overlap_scores(predicted, truth) == pytest.approx((2 * 25 / 75, 25 / 50))
    assert overlap_scores(truth, truth) == (1.0, 1.0)
    assert overlap_scores(np.zeros_like(truth), np.zeros_like(truth)) == (1.0, 1.0)
    assert overlap_scores(np.zeros_like(truth), truth) == (0.0, 0.0)


def test_crop_items_have_empty_targets(tmp_path) -> None:
    from training.lesion.data import load_masked_data

    make_masked_store(n_patients=4).save_to_disk(str(tmp_path / "store"))
    data = load_masked_data(str(tmp_path / "store"))
    items = example_items(data, np.arange(4), margin=2, min_side=8)
    assert (items[:, 1] == LESION).sum() == 4 and (items[:, 1] == CROP).sum() == 4
    processor = UsvclImageProcessor(image_size=32)
    for augment in (False, True):
        dataset = LesionDataset(data, items, processor, augment, 0, 2, 8)
        batch = torch.utils.data.default_collate([dataset[position] for position in range(len(items))])
        squares, targets = batch["squares"], batch["labels"]
        if augment:
            squares, targets = augment_on_device(squares, targets, batch["views"], noise_seed=0)
        assert normalise(squares, processor).shape == (len(items), 1, 32, 32) and targets.shape[1:] == (1, 32, 32)
        np.testing.assert_array_equal(targets.flatten(1).amax(1).numpy() > 0, items[:, 1] == LESION)
    plain = LesionDataset(data, items, processor, False, 0, 2, 8)[0]
    identity = augment_on_device(plain["squares"][None], plain["labels"][None], plain["views"][None], 0)
    torch.testing.assert_close(identity[1], plain["labels"][None])  # the centre view changes nothing


def test_tiny_cross_validated_run_writes_results_and_a_loadable_model(tmp_path) -> None:
    from usvcl_hf.runtime.lesion import load_lesion_model

    make_masked_store(n_patients=20).save_to_disk(str(tmp_path / "store"))
    config = LesionTrainConfig(store_path=str(tmp_path / "store"), output_dir=str(tmp_path / "run"), folds=[1, 2],
                               **TINY_LESION_TRAINING)
    results = training_function(config)
    assert [fold["fold"] for fold in results["folds"]] == [1, 2]
    with (tmp_path / "run" / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["kind"] for row in rows} == {"lesion", "crop"}
    for fold in results["folds"]:
        test_patients = {row["patient_id"] for row in rows if row["fold"] == str(fold["fold"])}
        assert len(test_patients) == fold["n_test"]  # one image per patient in this store
    lesion_dice = [float(row["dice"]) for row in rows if row["kind"] == "lesion"]
    pooled = results["pooled"]["metrics"]
    assert pooled["dice"]["value"] == pytest.approx(np.mean(lesion_dice))
    assert pooled["dice"]["ci_low"] <= pooled["dice"]["value"] <= pooled["dice"]["ci_high"]
    assert set(pooled["presence_auc_by_score"]) == {"max_pixel", "head"}
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["final_model"]["lesion_threshold"] == pytest.approx(
        float(np.median([fold["lesion_threshold"] for fold in saved["folds"]])))
    model, processor = load_lesion_model(tmp_path / "run" / "final_model")
    assert model.config.lesion_threshold == pytest.approx(saved["final_model"]["lesion_threshold"])
    assert model.config.presence_score == saved["final_model"]["presence_score"] and processor.image_size == 48
    assert "| pooled |" in (tmp_path / "run" / "results.md").read_text()


@pytest.fixture(scope="module")
def trained_lesion_model(tmp_path_factory):
    from tests.helpers.lesion_fixtures import train_tiny_lesion_model

    return train_tiny_lesion_model(tmp_path_factory.mktemp("lesion_model"))


def write_lesion_clip(path, pattern: list[bool], seed: int):
    """A clip whose frame i shows a drawn lesion when `pattern[i]`."""
    from tests.helpers.lesion_fixtures import lesion_frame
    from training import synthetic

    rng = np.random.default_rng(seed)
    frames = np.stack([lesion_frame(rng, 48, 64, with_lesion)[0] for with_lesion in pattern])  # (T, H, W)
    return synthetic.write_video(path, frames)


def test_prepare_data_keeps_lesion_frames_only(tmp_path, trained_lesion_model) -> None:
    from training.prepare_data import main

    clips = tmp_path / "clips"
    clips.mkdir()
    write_lesion_clip(clips / "patient_1_lesion.mp4", [True] * 6, seed=1)
    write_lesion_clip(clips / "patient_2_clear.mp4", [False] * 6, seed=2)
    write_lesion_clip(clips / "patient_3_mixed.mp4", [True] * 3 + [False] * 3, seed=3)
    status = main(["videos", "--input", str(clips), "--output", str(tmp_path / "store"), "--frame-stride", "1",
                   "--patient-regex", r"patient_(\d+)_", "--workers", "1", "--lesion-model", str(trained_lesion_model)])
    assert status == 0
    report = json.loads((tmp_path / "store" / "lesion_frames.json").read_text())
    assert report["clips"] == {"patient_1_lesion": {"kept": 6, "dropped": 0},
                               "patient_2_clear": {"kept": 0, "dropped": 6},
                               "patient_3_mixed": {"kept": 3, "dropped": 3}}
    store = datasets.load_from_disk(str(tmp_path / "store"))
    assert sorted(zip(store["video_id"], store["frame_index"])) == [
        *(("patient_1_lesion", index) for index in range(6)), *(("patient_3_mixed", index) for index in range(3))]
    summary = json.loads((tmp_path / "store" / "summary.json").read_text())
    assert summary["lesion_filter"]["frames_kept"] == 9 and summary["lesion_filter"]["frames_dropped"] == 9
    assert main(["videos", "--input", str(clips), "--output", str(tmp_path / "none"), "--workers", "1",
                 "--lesion-model", str(trained_lesion_model), "--lesion-threshold", "1.0"]) == 1
    assert main(["videos", "--input", str(clips), "--output", str(tmp_path / "bad"), "--workers", "1",
                 "--lesion-model", str(tmp_path / "missing_model")]) == 1


def test_trained_lesion_model_says_no_lesion_on_a_clear_clip(tmp_path, trained_lesion_model) -> None:
    from tests.helpers.demo_fixtures import save_tiny_classifier
    from usvcl_hf.runtime.clip_prediction import load_model, predict_clip
    from usvcl_hf.runtime.lesion import lesion_masks, load_lesion_model

    model, processor = load_model(save_tiny_classifier(tmp_path / "classifier"))
    lesion_model, lesion_processor = load_lesion_model(trained_lesion_model)
    clear = predict_clip(model, processor, write_lesion_clip(tmp_path / "clear.mp4", [False] * 5, seed=4),
                         frame_stride=1, crop=False, lesion_model=lesion_model, lesion_processor=lesion_processor)
    assert clear.label == "no lesion" and clear.probabilities == {} and not clear.lesion_frames.any()
    lesion = predict_clip(model, processor, write_lesion_clip(tmp_path / "lesion.mp4", [False, True, True], seed=5),
                          frame_stride=1, crop=False, lesion_model=lesion_model, lesion_processor=lesion_processor)
    assert lesion.label in ("benign", "malignant") and lesion.lesion_frames.tolist() == [False, True, True]
    (mask,) = lesion_masks(lesion_model, lesion_processor, [lesion.frames[lesion.most_suspicious_frame]])
    assert mask.shape == lesion.frames[0].shape and 0 < mask.mean() < 0.5  # the disc, outlined in the demo
