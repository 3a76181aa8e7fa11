"""Lesion crops: mask boxes against a loop reference, the crop around them, each fold's segmenter boxes in
train_lesion's boxes.csv, and fine-tuning on crops with validation and test images cut by those boxes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.lesion_fixtures import TINY_LESION_TRAINING, make_masked_store
from tests.helpers.stores import FINETUNE_CONFIG
from training import finetune
from training.finetune.data import LesionCrops, load_labeled_data
from training.lesion.boxes import BOX_COLUMNS, BOX_FILE_COLUMNS, read_boxes
from training.lesion.masks import mask_at_shape
from training.lesion.train import LesionTrainConfig, training_function
from usvcl_hf.image_processing_usvcl import resize_to_square, to_grey_float
from usvcl_hf.lesion_crop import crop_to_box, expand_box, mask_box

CROP_ARGS = ["--init", "random", "--backbone", "resnet10t", "--image-size", "32", "--num-epochs", "1",
             "--no-final-model", "--lesion-crop"]


def loop_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The reference: smallest and largest row / column of a True pixel, one pixel at a time."""
    cells = [(row, column) for row in range(mask.shape[0]) for column in range(mask.shape[1]) if mask[row, column]]
    if not cells:
        return None
    rows, columns = [cell[0] for cell in cells], [cell[1] for cell in cells]
    return min(columns), min(rows), max(columns) + 1, max(rows) + 1


@pytest.mark.parametrize("density", [0.0, 0.002, 0.05, 0.5])
def test_mask_box_matches_a_loop_reference(density) -> None:
    mask = np.random.default_rng(int(density * 1000)).random((23, 31)) < density
    assert mask_box(mask) == loop_box(mask)


def test_expand_box_grows_by_the_margin_and_stays_in_the_image() -> None:
    assert expand_box((10, 20, 30, 30), 0.25, 100, 100) == (5, 17, 35, 33)  # 20 x 10 box: 5 and 3 (ceil 2.5)
    assert expand_box((2, 1, 12, 9), 0.5, 10, 14) == (0, 0, 14, 10)
    assert expand_box((2, 1, 12, 9), 0.0, 10, 14) == (2, 1, 12, 9)


def test_crop_to_box_cuts_the_grown_box_or_keeps_the_whole_image() -> None:
    image = np.arange(100.0).reshape(10, 10)
    np.testing.assert_array_equal(crop_to_box(image, (2, 3, 6, 5), 0.5), image[2:6, 0:8])
    assert crop_to_box(image, None, 0.5) is image


def write_boxes(path, rows: list[list[str]], columns: list[str] | None = None) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns or BOX_FILE_COLUMNS)
        writer.writerows(rows)


def test_read_boxes_keys_each_fold_split_and_image_and_names_a_bad_file(tmp_path) -> None:
    first = tmp_path / "folds1.csv"
    write_boxes(first, [["1", "val", "a", "1", "2", "5", "7"], ["1", "test", "b", "", "", "", ""]])
    second = tmp_path / "folds2.csv"
    write_boxes(second, [["2", "test", "a", "0", "0", "3", "3"]])
    assert read_boxes([first, second]) == {(1, "val", "a"): (1, 2, 5, 7), (1, "test", "b"): None,
                                           (2, "test", "a"): (0, 0, 3, 3)}
    predictions = tmp_path / "predictions.csv"
    write_boxes(predictions, [["a", "lesion"]], columns=["image_id", "kind"])
    with pytest.raises(ValueError, match=r"predictions\.csv: not a lesion boxes file \(no column 'fold'\)"):
        read_boxes([predictions])
    with pytest.raises(ValueError, match=r"folds1\.csv: fold 1 has two boxes for image 'a'"):
        read_boxes([first, first])


def test_labeled_data_on_crops_cuts_by_masks_and_each_fold_by_its_segmenter(tmp_path) -> None:
    store = make_masked_store(n_patients=4)
    store.save_to_disk(str(tmp_path / "store"))
    boxes = {(1, "test", "bus_0000-0"): (0, 0, 8, 8), (1, "val", "bus_0001-0"): None,
             (2, "test", "bus_0001-0"): (4, 4, 14, 9)}
    data = load_labeled_data(str(tmp_path / "store"), 24, "pad", crops=LesionCrops(0.2, boxes))
    greys = [to_grey_float(store[row]["image"]) for row in range(2)]
    box = mask_box(mask_at_shape(store[0]["mask"], greys[0].shape))
    np.testing.assert_array_equal(data.squares[0], resize_to_square(crop_to_box(greys[0], box, 0.2), 24, "pad"))
    fold1, fold2 = data.for_fold(1), data.for_fold(2)
    np.testing.assert_array_equal(fold1.squares[0], resize_to_square(greys[0][0:10, 0:10], 24, "pad"))  # 8 + 2
    np.testing.assert_array_equal(fold1.squares[1], resize_to_square(greys[1], 24, "pad"))  # no box: whole image
    np.testing.assert_array_equal(fold1.squares[2:], data.squares[2:])  # rows without boxes keep their mask crop
    np.testing.assert_array_equal(fold2.squares[0], data.squares[0])
    np.testing.assert_array_equal(fold2.squares[1], resize_to_square(greys[1][3:10, 2:16], 24, "pad"))  # 10 x 5
    assert data.for_fold(3) is data and fold1.fold_squares == {}
    uncut = load_labeled_data(str(tmp_path / "store"), 24, "pad", crops=LesionCrops(0.2))
    np.testing.assert_array_equal(uncut.squares, data.squares)
    assert uncut.fold_squares == {}


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """A masked store and a tiny train_lesion run on its fold 1: boxes.csv with its validation and test boxes."""
    folder = tmp_path_factory.mktemp("crops")
    make_masked_store().save_to_disk(str(folder / "store"))
    training_function(LesionTrainConfig(store_path=str(folder / "store"), output_dir=str(folder / "lesion"),
                                        folds=[1], final_model=False, **TINY_LESION_TRAINING))
    return folder


def test_train_lesion_writes_the_boxes_of_each_fold_validation_and_test_image(segmented) -> None:
    with (segmented / "lesion" / "boxes.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    results = json.loads((segmented / "lesion" / "results.json").read_text())
    fold = results["folds"][0]
    assert [sum(row["split"] == split for row in rows) for split in ("val", "test")] == [fold["n_val"],
                                                                                          fold["n_test"]]
    with (segmented / "lesion" / "predictions.csv").open() as handle:
        tests = {row["image_id"] for row in csv.DictReader(handle) if row["kind"] == "lesion"}
    assert {row["image_id"] for row in rows if row["split"] == "test"} == tests
    boxes = [row for row in rows if row["box_x0"]]
    assert boxes  # the tiny segmenter finds some lesions
    for row in boxes:
        x0, y0, x1, y1 = (int(row[name]) for name in BOX_COLUMNS)
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 48  # inside the 48 x 64 image


def test_finetune_on_lesion_crops_validates_and_tests_on_the_segmenter_boxes(segmented, tmp_path) -> None:
    boxes = str(segmented / "lesion" / "boxes.csv")
    args = ["--config", str(FINETUNE_CONFIG), "--store-path", str(segmented / "store"), "--split-seed", "42",
            *CROP_ARGS]  # the segmenter's seed: the same inner splits
    finetune.main([*args, "--folds", "1", "--eval-boxes", boxes, "--output-dir", str(tmp_path / "run")])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["lesion_crop"] and results["config"]["eval_boxes"] == [boxes]
    assert np.isfinite(results["folds"][0]["val_auc"]) and results["folds"][0]["n_test"] == 4
    with pytest.raises(ValueError, match=r"boxes\.csv: fold 2's segmenter boxed 0 val images"):
        finetune.main([*args, "--folds", "2", "--eval-boxes", boxes, "--output-dir", str(tmp_path / "x")])
    with pytest.raises(ValueError, match=r"boxes\.csv: fold 1's segmenter boxed \d+ val images, not this run's"):
        finetune.main([*args, "--folds", "1", "--eval-boxes", boxes, "--split-seed", "7",
                       "--output-dir", str(tmp_path / "s")])  # the last --split-seed wins
    with pytest.raises(ValueError, match="need `lesion_crop`"):
        finetune.main([*args[:-1], "--folds", "1", "--eval-boxes", boxes, "--output-dir", str(tmp_path / "y")])
    with pytest.raises(ValueError, match="no lesion-mask loss"):
        finetune.main([*args, "--folds", "1", "--mask-loss-weight", "0.5", "--output-dir", str(tmp_path / "z")])


def test_final_from_trains_the_final_crop_model_from_finished_parts(segmented, tmp_path) -> None:
    args = ["--config", str(FINETUNE_CONFIG), "--store-path", str(segmented / "store"), *CROP_ARGS]
    parts = []
    for folds in (["1", "2"], ["3"]):
        parts.append(tmp_path / f"part{folds[0]}")
        finetune.main([*args, "--folds", *folds, "--output-dir", str(parts[-1])])
    files = [str(part / "results.json") for part in parts]
    final_args = [arg for arg in args if arg != "--no-final-model"]
    finetune.main([*final_args, "--final-from", *files, "--output-dir", str(tmp_path / "final")])
    results = json.loads((tmp_path / "final" / "results.json").read_text())
    folds = [fold for path in files for fold in json.loads(Path(path).read_text())["folds"]]
    assert results["final_from"] == {"files": files, "folds": [1, 2, 3]}
    assert results["final_model"]["threshold"] == pytest.approx(np.median([fold["threshold"] for fold in folds]))
    assert results["final_model"]["epochs"] == max(1, int(np.median([fold["best_epoch"] for fold in folds])))
    config = json.loads((tmp_path / "final" / "final_model" / "config.json").read_text())
    assert config["lesion_crop_margin"] == pytest.approx(0.2)
    assert config["decision_threshold"] == pytest.approx(results["final_model"]["threshold"])
    with pytest.raises(ValueError, match=r"part3/results\.json: fold 3 is also in another --final-from file"):
        finetune.main([*final_args, "--final-from", *files, files[1], "--output-dir", str(tmp_path / "twice")])
    with pytest.raises(ValueError, match="trains the final model only"):
        finetune.main([*args, "--final-from", *files, "--output-dir", str(tmp_path / "none")])
    (tmp_path / "pooled.json").write_text(json.dumps({"pooled": {}}))
    with pytest.raises(ValueError, match=r"pooled\.json: no finished folds"):
        finetune.main([*final_args, "--final-from", str(tmp_path / "pooled.json"), "--output-dir", str(tmp_path / "p")])
