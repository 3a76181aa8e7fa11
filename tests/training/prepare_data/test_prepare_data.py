"""Tests for training.prepare_data: ids, skip report, --strict, empty input, determinism, images mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from tests.helpers.paths import REPO_ROOT
from training import synthetic
from training.prepare_data import main

STRIDE = 8
FRAMES_PER_CLIP = 4  # 32 frames at stride 8


def make_video_folder(root: Path, *, nested: bool = False, bad: bool = True) -> Path:
    """patient_<k>_<point>.mp4 clips (optionally in per-patient folders) plus a text-as-mp4 and a corrupt avi."""
    for patient in (1, 2):
        for point in ("L1", "R1"):
            folder = root / f"pat{patient}" if nested else root
            folder.mkdir(parents=True, exist_ok=True)
            synthetic.write_video(folder / f"patient_{patient}_{point}.mp4")
    if bad:
        synthetic.write_text_as_mp4(root / "patient_3_text.mp4")
        synthetic.write_corrupt(root / "patient_3_noise.avi")
    (root / "README.txt").write_text("ignored", encoding="utf-8")
    return root


def run_videos(input_folder: Path, output: Path, *extra: str) -> int:
    return main(["videos", "--input", str(input_folder), "--output", str(output), "--frame-stride", str(STRIDE),
                 "--workers", "2", *extra])


def test_help_via_subprocess() -> None:
    result = subprocess.run([sys.executable, "-m", "training.prepare_data", "--help"], capture_output=True,
                            text=True, check=True, cwd=REPO_ROOT)
    assert "videos" in result.stdout
    assert "images" in result.stdout


def test_regex_ids_and_skip_report(tmp_path: Path) -> None:
    source = make_video_folder(tmp_path / "in")
    assert run_videos(source, tmp_path / "store", "--patient-regex", r"patient_(\d+)_") == 0
    store = datasets.load_from_disk(str(tmp_path / "store"))
    assert len(store) == 4 * FRAMES_PER_CLIP
    assert set(store["patient_id"]) == {"1", "2"}
    assert store["video_id"][:FRAMES_PER_CLIP] == ["patient_1_L1"] * FRAMES_PER_CLIP
    assert store["frame_index"][:FRAMES_PER_CLIP] == [0, 8, 16, 24]
    assert store[0]["image"].mode == "L"
    skipped = json.loads((tmp_path / "store" / "skipped.json").read_text())
    assert {item["source"] for item in skipped} == {"patient_3_text.mp4", "patient_3_noise.avi"}
    assert all(item["reason"] for item in skipped)
    summary = json.loads((tmp_path / "store" / "summary.json").read_text())
    assert summary["files_read"] == 4
    assert summary["frames_kept"] == 4 * FRAMES_PER_CLIP


def test_metadata_csv_ids(tmp_path: Path) -> None:
    source = make_video_folder(tmp_path / "in", bad=False)
    csv_path = tmp_path / "clips.csv"
    csv_path.write_text("file,patient_id\npatient_1_L1.mp4,A\npatient_1_R1.mp4,A\npatient_2_L1.mp4,B\n",
                        encoding="utf-8")
    assert run_videos(source, tmp_path / "store", "--metadata", str(csv_path)) == 0
    store = datasets.load_from_disk(str(tmp_path / "store"))
    assert sorted(set(store["patient_id"])) == ["A", "B"]
    skipped = json.loads((tmp_path / "store" / "skipped.json").read_text())
    assert [item["source"] for item in skipped] == ["patient_2_R1.mp4"]


def test_parent_folder_ids(tmp_path: Path) -> None:
    source = make_video_folder(tmp_path / "in", nested=True, bad=False)
    (source / "README.txt").unlink()
    assert run_videos(source, tmp_path / "store") == 0
    store = datasets.load_from_disk(str(tmp_path / "store"))
    assert sorted(set(store["patient_id"])) == ["pat1", "pat2"]
    assert store["source"][0] == "pat1/patient_1_L1.mp4"


def test_strict_fails_on_bad_file(tmp_path: Path) -> None:
    source = make_video_folder(tmp_path / "in")
    assert run_videos(source, tmp_path / "store", "--strict") != 0
    assert not (tmp_path / "store").exists()


def test_empty_and_unreadable_input_fail(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert run_videos(tmp_path / "empty", tmp_path / "store") != 0
    assert "no supported input files" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    synthetic.write_text_as_mp4(bad / "a.mp4")
    assert run_videos(bad, tmp_path / "store") != 0
    assert "no readable file" in capsys.readouterr().err


def test_rerun_gives_identical_store(tmp_path: Path) -> None:
    source = make_video_folder(tmp_path / "in")
    assert run_videos(source, tmp_path / "first", "--crop") == 0
    assert run_videos(source, tmp_path / "second", "--crop", "--workers", "1") == 0
    assert run_videos(source, tmp_path / "second", "--crop") == 0  # replaces its own previous store
    first = datasets.load_from_disk(str(tmp_path / "first")).cast_column("image", datasets.Image(decode=False))
    second = datasets.load_from_disk(str(tmp_path / "second")).cast_column("image", datasets.Image(decode=False))
    assert first.to_dict() == second.to_dict()


def test_images_mode_with_metadata_and_folds(tmp_path: Path) -> None:
    images = tmp_path / "in" / "Images"
    images.mkdir(parents=True)
    rows = [("img_a", "1", "benign"), ("img_b", "1", "malignant"), ("img_c", "2", "benign"), ("img_d", "3", "benign")]
    for seed, (image_id, _, _) in enumerate(rows):
        synthetic.write_grey_png(images / f"{image_id}.png", seed=seed)
    (tmp_path / "meta.csv").write_text(
        "ID,Case,Pathology\n" + "".join(f"{i},{c},{p}\n" for i, c, p in rows), encoding="utf-8")
    (tmp_path / "folds.csv").write_text(
        "ID,kFold,valid_1,valid_2\nimg_a,1,NaN,1\nimg_b,1,NaN,0\nimg_c,2,1,NaN\nimg_d,2,0,NaN\n", encoding="utf-8")
    status = main(["images", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "store"),
                   "--metadata", str(tmp_path / "meta.csv"), "--file-column", "ID", "--patient-column", "Case",
                   "--label-column", "Pathology", "--file-template", "Images/{}.png",
                   "--folds", str(tmp_path / "folds.csv"), "--workers", "1"])
    assert status == 0
    store = datasets.load_from_disk(str(tmp_path / "store"))
    assert store.features["label"].names == ["benign", "malignant"]
    assert store["image_id"] == ["img_a", "img_b", "img_c", "img_d"]
    assert store["patient_id"] == store["video_id"] == ["1", "1", "2", "3"]
    assert store["frame_index"] == [0, 1, 0, 0]
    assert store["label"] == [0, 1, 0, 0]
    assert store["fold"] == [1, 1, 2, 2]
    assert store["split_1"] == ["test", "test", "train", "val"]
    assert store["split_2"] == ["train", "val", "test", "test"]


def test_images_mode_class_folders(tmp_path: Path) -> None:
    root = synthetic.make_image_class_folder(tmp_path / "in")
    status = main(["images", "--input", str(root), "--output", str(tmp_path / "store"),
                   "--patient-regex", r"(p\d+)_", "--workers", "1"])
    assert status == 0
    store = datasets.load_from_disk(str(tmp_path / "store"))
    assert store.features["label"].names == ["benign", "malignant"]
    assert len(store) == 6
    assert set(store["fold"]) == {-1}
    assert store["patient_id"][:3] == ["p00", "p00", "p01"]
