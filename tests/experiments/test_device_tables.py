"""`experiments/device_tables.py`: the per-device AUC table and the site-calibration table, on made-up predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.device_tables import decision_rates, per_device_auc_table, site_calibration_table


def predictions() -> pd.DataFrame:
    """Two scanners: A ranks perfectly, B exactly backwards; two images per patient."""
    rows = []
    for device, flip in (("A", False), ("B", True)):
        for patient in range(10):
            label = patient % 2
            for image in range(2):
                score = 0.2 + 0.6 * label + 0.01 * image
                rows.append({"device": device, "patient_id": f"{device}{patient}", "label": label,
                             "prob_malignant": 1 - score if flip else score})
    return pd.DataFrame(rows)


def test_per_device_auc_table_has_a_row_per_device_and_all() -> None:
    table = per_device_auc_table(predictions(), n_boot=50)
    lines = table.strip().splitlines()
    assert lines[0].startswith("| device | images | patients")
    assert lines[2].startswith("| A | 20 | 10 | 0.50 | 1.000 (1.000-1.000)")
    assert lines[3].startswith("| B | 20 | 10 | 0.50 | 0.000 (0.000-0.000)")
    assert lines[4].startswith("| all | 40 | 20 |")


def draws() -> pd.DataFrame:
    """Three draws: the model's threshold calls every image benign, the site's separates the classes."""
    rows = []
    for draw in range(3):
        for patient in range(8):
            label = patient % 2
            rows.append({"draw": draw, "patient_id": f"p{patient}", "label": label, "image_id": f"i{patient}",
                         "prob_model": 0.1 + 0.2 * label, "threshold_model": 0.9,
                         "prob_site": 0.1 + 0.8 * label, "threshold_site": 0.5})
    return pd.DataFrame(rows)


def test_site_calibration_table_gives_before_after_and_difference() -> None:
    table = site_calibration_table(draws(), n_boot=50)
    lines = table.strip().splitlines()
    assert "3 draws, 8 patients" in lines[0]
    assert lines[2] == "| model's calibration | 0.500 (0.500-0.500) | 0.000 (0.000-0.000) | 1.000 (1.000-1.000) |"
    assert lines[3].startswith("| site calibration (other half) | 1.000 (1.000-1.000) |")
    assert lines[4].startswith("| difference | 0.500 (0.500-0.500) | 1.000 (1.000-1.000) | 0.000 (0.000-0.000) |")


def test_decision_rates_weigh_patients() -> None:
    labels, called = np.array([1, 1, 0, 0]), np.array([True, False, False, True])
    rates = decision_rates(labels, called, np.array([[1, 1, 1, 1], [2, 0, 1, 0]]))
    assert rates["sensitivity"].tolist() == [0.5, 1.0] and rates["specificity"].tolist() == [0.5, 1.0]


def write_run(folder, rows: pd.DataFrame) -> None:
    """A finished run folder as `training.finetune` writes it (predictions, results with the seed)."""
    import json

    folder.mkdir(parents=True)
    rows.to_csv(folder / "predictions.csv", index=False)
    (folder / "results.json").write_text(json.dumps({"config": {"seed": 42}, "folds": []}))


def test_per_device_kind_takes_devices_from_the_run_or_the_devices_file(tmp_path) -> None:
    import pytest

    from experiments.report.device_kinds import per_device_table

    rows = predictions().assign(image_id=lambda frame: [f"img{i}" for i in range(len(frame))], fold=1, threshold=0.5)
    base = tmp_path / "experiments"
    write_run(base / "with_device", rows)
    write_run(base / "without_device", rows.drop(columns="device"))
    rows[["image_id", "device"]].to_csv(base / "devices.csv", index=False)
    table = {"devices": "devices.csv", "runs": {"from the run": "with_device", "from the file": "without_device"}}
    text = per_device_table(table, tmp_path)
    assert text.count("| A | 20 | 10 |") == 2 and "**from the run**" in text and "**from the file**" in text
    rows.iloc[:5][["image_id", "device"]].to_csv(base / "devices.csv", index=False)
    with pytest.raises(ValueError, match="35 test images are not in the devices file"):
        per_device_table(table, tmp_path)
