"""Does the model look at the lesion? Grad-CAM of each fold model on its own test fold, against lesion masks.

    python -m training.finetune.saliency_eval --run-dir RUN --store stores/bus_bra \
        --masks ../shared/data/bus_bra/Masks --output RUN/saliency

`RUN` is a `training.finetune` output with `--save-fold-models` (folders `fold_<k>/model`). For every test image:
the pointing game (is the saliency maximum inside the lesion mask?) and the share of saliency energy inside the
mask, for the image's true class; grouped by benign / malignant with 95% bootstrap CIs by patient. A uniform
saliency map scores the mask's area share on both, which is printed next to them as the chance level.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import matplotlib
import numpy as np
from tqdm.auto import tqdm

from training.atomic import write_json_atomic
from training.cli_inputs import require_inputs
from training.evaluation import bootstrap_ci, markdown_table
from training.lesion.masks import load_mask, mask_path
from training.logs import setup_logging
from training.provenance import run_command
from usvcl_hf.image_processing_usvcl import to_grey_uint8
from usvcl_hf.runtime.clip_prediction import load_model
from usvcl_hf.runtime.saliency import gradcam_heatmap, overlay_heatmap

matplotlib.use("Agg")
import matplotlib.pyplot as plt

GRID_IMAGES_PER_CLASS = 4
BOOTSTRAP_SAMPLES = 1000
METRICS = ("pointing_game", "energy_inside", "chance_level")
LOGGER = logging.getLogger(__name__)


@dataclass
class ImageSaliency:
    """Saliency scores of one test image."""

    image_id: str
    patient_id: str
    label: int
    fold: int
    pointing_game: float
    energy_inside: float
    chance_level: float


def pointing_hit(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """1.0 when the saliency maximum lies inside the mask, else 0.0."""
    peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return float(mask[peak])


def energy_inside(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the saliency mass that falls inside the mask (the mask's area share for a uniform map)."""
    total = float(heatmap.sum())
    return float(heatmap[mask].sum()) / total if total > 0 else float(mask.mean())


def score_fold(model_dir: Path, rows: datasets.Dataset, masks_dir: Path, fold: int) -> list[ImageSaliency]:
    """Grad-CAM scores of one fold model on its test rows."""
    model, processor = load_model(str(model_dir))
    scores = []
    for row in tqdm(rows, desc=f"saliency fold {fold}", leave=False):
        frame = to_grey_uint8(row["image"])
        mask = load_mask(mask_path(masks_dir, row["image_id"]), frame.shape)
        heatmap = gradcam_heatmap(model, processor, frame, target_class=int(row["label"]))
        scores.append(ImageSaliency(
            row["image_id"], str(row["patient_id"]), int(row["label"]), fold,
            pointing_hit(heatmap, mask), energy_inside(heatmap, mask), float(mask.mean()),
        ))
    return scores


def class_names(store: datasets.Dataset) -> list[str]:
    """The names of the store's `label` classes (its `ClassLabel`), or the label values as text."""
    feature = store.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    return [str(value) for value in sorted(set(store["label"]))]


def summarise(scores: Sequence[ImageSaliency], seed: int, names: Sequence[str]) -> dict[str, dict]:
    """Per class and overall: mean of each metric with a 95% bootstrap CI over patients."""
    groups = {name: [s for s in scores if s.label == index] for index, name in enumerate(names)}
    groups["all"] = list(scores)
    summary = {}
    for name, members in groups.items():
        if not members:
            continue
        values = {metric: np.array([getattr(s, metric) for s in members]) for metric in METRICS}

        def statistic(weights: np.ndarray, values: dict = values) -> dict[str, float]:
            return {metric: float(np.average(v, weights=weights)) if weights.sum() else float("nan")
                    for metric, v in values.items()}

        intervals = bootstrap_ci(statistic, [s.patient_id for s in members], BOOTSTRAP_SAMPLES, seed)
        summary[name] = {"n": len(members)} | {
            metric: {"value": float(values[metric].mean()), "ci_low": intervals[metric][0],
                     "ci_high": intervals[metric][1]}
            for metric in METRICS
        }
    return summary


def plot_grid(model_dir: Path, rows: datasets.Dataset, masks_dir: Path, path: Path, names: Sequence[str]) -> Path:
    """Original with lesion outline (top) and Grad-CAM overlay (bottom) for the first test images of each class."""
    model, processor = load_model(str(model_dir))
    chosen = [i for label in range(len(names)) for i in
              [j for j, value in enumerate(rows["label"]) if value == label][:GRID_IMAGES_PER_CLASS]]
    figure, axes = plt.subplots(2, len(chosen), figsize=(2.2 * len(chosen), 4.8))
    for column, index in enumerate(chosen):
        row = rows[index]
        frame = to_grey_uint8(row["image"])
        mask = load_mask(mask_path(masks_dir, row["image_id"]), frame.shape)
        heatmap = gradcam_heatmap(model, processor, frame, target_class=int(row["label"]))
        for axis, picture in zip(axes[:, column], (frame, overlay_heatmap(frame, heatmap))):
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            axis.contour(mask, levels=[0.5], colors="lime", linewidths=1.0)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[0, column].set_title(f"{row['image_id']}\n{names[row['label']]}", fontsize=8)
    axes[0, 0].set_ylabel("image + lesion mask")
    axes[1, 0].set_ylabel("Grad-CAM (true class)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def fold_test_rows(store: datasets.Dataset, fold: int, limit: int | None) -> datasets.Dataset:
    """The store's rows whose official test fold is `fold` (at most `limit`, first by image id)."""
    indices = [i for i, value in enumerate(store["fold"]) if value == fold]
    indices = sorted(indices, key=lambda i: store[i]["image_id"])[: limit or None]
    return store.select(indices)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, type=Path, help="finetune output with fold_<k>/model folders")
    parser.add_argument("--store", required=True, help="labelled image store with image_id, label, fold columns")
    parser.add_argument("--masks", required=True, type=Path, help="folder of BUS-BRA lesion masks")
    parser.add_argument("--output", required=True, type=Path, help="folder for saliency.json/.md and the grid")
    parser.add_argument("--max-per-fold", type=int, default=None, help="score at most this many test images a fold")
    parser.add_argument("--grid", type=Path, default=None, help="where to save the 8-image grid (default: output)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def write_outputs(summary: dict, output: Path) -> None:
    """saliency.json and saliency.md (one row per class and overall)."""
    output.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output / "saliency.json", summary)
    rows = [[group, values["n"]] + [f"{values[m]['value']:.3f} [{values[m]['ci_low']:.3f}, {values[m]['ci_high']:.3f}]"
                                     for m in METRICS] for group, values in summary["groups"].items()]
    (output / "saliency.md").write_text(markdown_table(["class", "n", *METRICS], rows) + "\n")


def record_in_results(run_dir: Path, summary: dict) -> Path | None:
    """Put the summary (without per-image rows) into the run's results.json as its `saliency` field."""
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        return None
    results = json.loads(results_path.read_text())
    results["saliency"] = {key: value for key, value in summary.items() if key != "images"}
    write_json_atomic(results_path, results)
    return results_path


def main(argv: Sequence[str] | None = None) -> dict:
    """Score every fold model found in the run directory and write the summary."""
    args = parse_args(argv)
    require_inputs("python -m training.finetune.saliency_eval", {"--run-dir": args.run_dir, "--store": args.store,
                                                        "--masks": args.masks})
    setup_logging()
    store = datasets.load_from_disk(args.store)
    names = class_names(store)
    fold_dirs = sorted(args.run_dir.glob("fold_*/model"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not fold_dirs:
        raise SystemExit(f"{args.run_dir}: no fold_<k>/model folders (run training.finetune with --save-fold-models)")
    folds = [int(path.parent.name.split("_")[1]) for path in fold_dirs]
    scores: list[ImageSaliency] = []
    for model_dir, fold in tqdm(list(zip(fold_dirs, folds)), desc="folds"):
        scores += score_fold(model_dir, fold_test_rows(store, fold, args.max_per_fold), args.masks, fold)
    grid = plot_grid(fold_dirs[0], fold_test_rows(store, folds[0], None), args.masks,
                     args.grid or args.output / "saliency_grid.png", names)
    summary = {"run_dir": str(args.run_dir), "command": run_command("training.finetune.saliency_eval"),
               "target": "true class", "folds": folds,
               "groups": summarise(scores, args.seed, names), "grid": str(grid), "images": [s.__dict__ for s in scores]}
    write_outputs(summary, args.output)
    results_path = record_in_results(args.run_dir, summary)
    LOGGER.info("Saliency summary: %s, %s; grid: %s; recorded in %s", args.output / "saliency.json",
                args.output / "saliency.md", grid, results_path or "(no results.json in the run folder)")
    return summary


if __name__ == "__main__":
    main()
