"""Table kinds across scanners (`experiments/device_tables.py` does the statistics):

- `per_device`: AUC with a patient-bootstrap CI per scanner, one block of rows per run named in `runs`
  (`{label: folder}`, folders relative to experiments/). A run's scanners come from its `device` column, else from
  the image ids in `devices` (a CSV `image_id,device`, BUS-BRA's `Device` column of `bus_data.csv`).
- `site_calibration`: balanced accuracy before and after a site calibration, from the draws file named in `draws`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from experiments.device_tables import per_device_auc_table, site_calibration_table
from experiments.report.runs import EXPERIMENTS_DIR, load_runs


def run_predictions(folder: Path, devices: pd.DataFrame | None) -> pd.DataFrame:
    """The test predictions of the first seed of `folder`, with a `device` column."""
    predictions = load_runs(folder)[0].predictions
    if "device" in predictions.columns:
        return predictions
    if devices is None:
        raise ValueError(f"{folder}: its predictions have no device column and the table names no devices file")
    merged = predictions.merge(devices, on="image_id", how="left", validate="one_to_one")
    missing = merged["device"].isna().sum()
    if missing:
        raise ValueError(f"{folder}: {missing} test images are not in the devices file")
    return merged


def per_device_table(table: dict[str, Any], root: Path) -> str:
    """One section of rows per run: its label, then `per_device_auc_table` of its predictions."""
    base = root / EXPERIMENTS_DIR
    devices = pd.read_csv(base / table["devices"]) if table.get("devices") else None
    blocks = []
    for label, folder in table["runs"].items():
        blocks.append(f"**{label}**\n\n{per_device_auc_table(run_predictions(base / folder, devices))}")
    return "\n\n".join(blocks)


def site_table(table: dict[str, Any], root: Path) -> str:
    """`site_calibration_table` of the committed draws."""
    return site_calibration_table(pd.read_csv(root / EXPERIMENTS_DIR / table["draws"]))


DEVICE_TABLE_KINDS = {"per_device": per_device_table, "site_calibration": site_table}

__all__ = ["DEVICE_TABLE_KINDS", "per_device_table", "run_predictions", "site_table"]
