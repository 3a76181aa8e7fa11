"""Out-of-distribution statistics for an exported classifier: fit, choose the threshold, measure, store.

    python -m training.ood --model models/usvcl-lite0-busbra

1. Pooled features of BUS-BRA images, read as the demo reads them (`usvcl_hf.clip_prediction.read_source`, crop
   on). Patients are split, seeded, into three disjoint groups: `fit` (the Gaussian model), `threshold` (the
   threshold: the `1 - false_alarm_rate` quantile of their scores) and `report` (the false-alarm rate reported).
2. The Gaussian model (probabilistic PCA, `usvcl_hf.modeling_usvcl.UsvclFeatureDensity`) of the `fit` features:
   mean, the top `k` principal directions and their variances, the mean variance of the other directions.
3. Lung ultrasound clips (POCUS, COVID-BLUES by default; never used for fitting or for the threshold): up to
   `frames_per_clip` frames per clip at the demo's frame stride, crop on; the detection rate per frame and per clip
   (a clip is flagged when the median of its frames' scores is above the threshold, as `predict_clip` does).
4. The statistics go into the model folder (buffers saved with the weights, in float32; `config.ood_components`,
   `config.ood_threshold`), rewritten by `training.refresh_export.rewrite_classifier_folder`; the rates, with 95%
   bootstrap intervals (patients for BUS-BRA, clips for the lung sets), go to a results file.

Caveat: the shipped model's final training used all of BUS-BRA, so the held-out patients are held out from the
Gaussian model, not from the classifier: the false-alarm rate on new breast images may be higher.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import usvcl_hf
from training.evaluation import bootstrap_ci
from training.export import MAX_WEIGHTS_MB, ExportError, load_processor
from training.logs import setup_logging
from training.provenance import git_commit, machine_description, run_command
from training.refresh_export import rewrite_classifier_folder
from usvcl_hf import UsvclForImageClassification
from usvcl_hf.clip_prediction import DEFAULT_FRAME_STRIDE, read_source
from usvcl_hf.input_checks import CHECKED_SIZES
from usvcl_hf.modeling_usvcl import UsvclFeatureDensity
from usvcl_hf.video import VIDEO_SUFFIXES, ClipReadError, read_clip

LOGGER = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
DEFAULT_BUS_BRA = DATA_ROOT / "bus_bra"
DEFAULT_LUNG = (f"pocus={DATA_ROOT / 'pocus_cc_by' / 'clips'}",
                f"covid_blues={DATA_ROOT / 'covid_blues_lus_videos' / 'lus_videos'}")
DEFAULT_COMPONENTS = 32
DEFAULT_FALSE_ALARM_RATE = 0.05
DEFAULT_FRAMES_PER_CLIP = 4
SPLIT_SHARES = {"fit": 0.6, "threshold": 0.2, "report": 0.2}  # of BUS-BRA patients
MIN_VARIANCE_SHARE = 1e-6  # variances are floored at this share of the largest one
N_BOOT = 1000
BATCH_SIZE = 16


@dataclass
class FeatureSet:
    """Pooled features `(n, F)` of n frames, the group (patient or clip) and source of each."""

    features: np.ndarray
    groups: list[str]
    sources: list[str]


def bus_bra_items(folder: Path, max_patients: int | None, seed: int) -> dict[str, list[tuple[Path, str]]]:
    """`{split: [(image path, patient)]}`: BUS-BRA patients (`Case` in bus_data.csv) split, seeded, by SPLIT_SHARES."""
    with open(folder / "bus_data.csv", newline="") as handle:
        rows = [(folder / "Images" / f"{row['ID']}.png", str(row["Case"])) for row in csv.DictReader(handle)]
    patients = np.array(sorted({patient for _, patient in rows}))
    patients = patients[np.random.default_rng(seed).permutation(len(patients))][:max_patients]
    bounds = np.cumsum([0, *(round(share * len(patients)) for share in SPLIT_SHARES.values())])
    bounds[-1] = len(patients)
    split_of = {patient: name for name, start, end in zip(SPLIT_SHARES, bounds[:-1], bounds[1:])
                for patient in patients[start:end]}
    return {name: [(path, patient) for path, patient in rows if split_of.get(patient) == name] for name in SPLIT_SHARES}


def pooled_features(model: UsvclForImageClassification, processor, frames: Sequence[np.ndarray]) -> np.ndarray:
    """Pooled backbone features `(n, F)` of `(H, W)` uint8 frames, in batches."""
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(frames), BATCH_SIZE):
            batch = processor(list(frames[start : start + BATCH_SIZE]), return_tensors="pt", **CHECKED_SIZES)
            outputs.append(model.usvcl(batch["pixel_values"]).pooler_output.float())  # (b, F)
    return torch.cat(outputs).numpy()  # (n, F)


def image_features(model, processor, items: list[tuple[Path, str]], name: str) -> FeatureSet:
    """Features of still images read as `predict_clip` reads them (crop on)."""
    frames = [read_source(path).frames[0] for path, _ in tqdm(items, desc=f"read {name}", leave=False)]
    features = [pooled_features(model, processor, frames[start : start + 64])
                for start in tqdm(range(0, len(frames), 64), desc=f"features {name}", leave=False)]
    return FeatureSet(np.concatenate(features), [group for _, group in items], [str(path) for path, _ in items])


def evenly_spaced(count: int, keep: int) -> np.ndarray:
    """Indices of `keep` positions spread evenly over `count` (all when fewer)."""
    return np.unique(np.linspace(0, count - 1, num=min(keep, count)).round().astype(int))


def clip_features(model, processor, folder: Path, frames_per_clip: int, name: str) -> FeatureSet:
    """Features of up to `frames_per_clip` frames of every clip in `folder` (demo stride, crop on)."""
    clips = sorted(path for path in folder.iterdir() if path.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        raise ExportError(f"{folder}: no clips ({sorted(VIDEO_SUFFIXES)})")
    features, groups, sources = [], [], []
    for path in tqdm(clips, desc=f"clips {name}", leave=False):
        try:
            frames = read_clip(path, frame_stride=DEFAULT_FRAME_STRIDE, crop=True).frames
        except ClipReadError as error:
            LOGGER.warning("skipped %s", error)
            continue
        chosen = frames[evenly_spaced(len(frames), frames_per_clip)]  # (t, H, W)
        features.append(pooled_features(model, processor, list(chosen)))
        groups += [path.name] * len(chosen)
        sources += [path.name] * len(chosen)
    return FeatureSet(np.concatenate(features), groups, sources)


def fit_density(features: np.ndarray, num_components: int) -> UsvclFeatureDensity:
    """Probabilistic PCA of `features (n, F)`: mean, top-k directions and variances, residual variance."""
    data = torch.from_numpy(features).double()
    count, width = data.shape
    if not 1 <= num_components < min(count, width):
        raise ExportError(f"--components must be in [1, {min(count, width) - 1}] for {count} x {width} features.")
    mean = data.mean(0)
    _, singular, directions = torch.linalg.svd(data - mean, full_matrices=False)  # (n, F) -> (r,), (r, F)
    variances = singular.pow(2) / (count - 1)  # (r,) eigenvalues of the covariance
    total = (data - mean).pow(2).sum() / (count - 1)
    floor = MIN_VARIANCE_SHARE * float(variances[0])
    density = UsvclFeatureDensity(width, num_components)
    density.mean.copy_(mean.float())
    density.components.copy_(directions[:num_components].float())
    density.variances.copy_(variances[:num_components].clamp_min(floor).float())
    residual = (total - variances[:num_components].sum()) / (width - num_components)
    density.residual_variance.fill_(max(float(residual), floor))
    return density


def scores(density: UsvclFeatureDensity, feature_set: FeatureSet) -> np.ndarray:
    """Out-of-distribution score `(n,)` of each frame (the model's own formula)."""
    with torch.no_grad():
        return density(torch.from_numpy(feature_set.features)).double().numpy()


def rate_with_ci(flags: np.ndarray, groups: Sequence[str], seed: int) -> dict[str, float]:
    """Share of True flags with a 95% bootstrap interval over `groups` (patients or clips)."""
    flags = np.asarray(flags, dtype=float)
    low, high = bootstrap_ci(lambda w: {"rate": float((w * flags).sum() / w.sum())}, groups, N_BOOT, seed)["rate"]
    return {"value": float(flags.mean()), "ci_low": low, "ci_high": high, "n": len(flags),
            "groups": len(set(groups))}


def clip_level(frame_scores: np.ndarray, groups: list[str]) -> tuple[np.ndarray, list[str]]:
    """Median frame score per clip (what `predict_clip` flags), with the clip names."""
    names = sorted(set(groups))
    index = np.asarray(groups)
    return np.array([np.median(frame_scores[index == name]) for name in names]), names


def measure(density: UsvclFeatureDensity, bus_bra: dict[str, FeatureSet], lung: dict[str, FeatureSet],
            false_alarm_rate: float, seed: int) -> dict:
    """The threshold (from the `threshold` patients) and every rate, as a JSON-ready dict."""
    threshold = float(np.quantile(scores(density, bus_bra["threshold"]), 1.0 - false_alarm_rate))
    record = {"threshold": threshold, "bus_bra_false_alarms": {}, "lung_detection": {}}
    for name, feature_set in bus_bra.items():
        record["bus_bra_false_alarms"][name] = rate_with_ci(scores(density, feature_set) > threshold,
                                                            feature_set.groups, seed)
    for name, feature_set in lung.items():
        frame_scores = scores(density, feature_set)
        clip_scores, clip_names = clip_level(frame_scores, feature_set.groups)
        record["lung_detection"][name] = {
            "frames": rate_with_ci(frame_scores > threshold, feature_set.groups, seed),
            "clips": rate_with_ci(clip_scores > threshold, clip_names, seed),
            "median_score": float(np.median(frame_scores)),
        }
    record["bus_bra_median_score"] = {name: float(np.median(scores(density, fs))) for name, fs in bus_bra.items()}
    return record


def attach(density: UsvclFeatureDensity, threshold: float):
    """An update for `rewrite_classifier_folder`: the fitted statistics and threshold into the model and config."""

    def update(model: UsvclForImageClassification) -> None:
        model.config.ood_components = int(density.components.shape[0])
        model.config.ood_threshold = float(threshold)
        model.config.validate_usvcl()
        model.feature_density = density

    return update


def parse_named_folders(values: Sequence[str]) -> dict[str, Path]:
    """`NAME=FOLDER` pairs -> `{name: folder}`."""
    named = {}
    for value in values:
        name, separator, folder = value.partition("=")
        if not separator or not name:
            raise ExportError(f"--lung-clips takes NAME=FOLDER, got {value!r}")
        named[name] = Path(folder)
    return named


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m training.ood",
        description="Fit the out-of-distribution statistics of an exported classifier on BUS-BRA, choose the "
        "threshold on held-out patients, measure false alarms (held-out BUS-BRA) and detection (lung clips), store "
        "them in the model folder and write the rates to a results file.",
    )
    parser.add_argument("--model", type=Path, required=True, help="exported classifier folder (rewritten in place)")
    parser.add_argument("--bus-bra", type=Path, default=DEFAULT_BUS_BRA, help="BUS-BRA folder (bus_data.csv, Images/)")
    parser.add_argument("--lung-clips", nargs="+", default=list(DEFAULT_LUNG), metavar="NAME=FOLDER",
                        help="out-of-distribution clip folders to measure detection on (default: POCUS, COVID-BLUES)")
    parser.add_argument("--components", type=int, default=DEFAULT_COMPONENTS, help="principal directions k")
    parser.add_argument("--false-alarm-rate", type=float, default=DEFAULT_FALSE_ALARM_RATE,
                        help="share of held-out BUS-BRA images (threshold split) above the threshold")
    parser.add_argument("--frames-per-clip", type=int, default=DEFAULT_FRAMES_PER_CLIP, help="lung frames per clip")
    parser.add_argument("--max-patients", type=int, help="use only this many BUS-BRA patients (quick runs)")
    parser.add_argument("--seed", type=int, default=0, help="patient split and bootstrap seed")
    parser.add_argument("--output", type=Path,
                        help="results JSON (default experiments/out_of_distribution/results/MODEL_NAME.json)")
    parser.add_argument("--no-store", action="store_true", help="measure only; leave the model folder unchanged")
    parser.add_argument("--max-size-mb", type=float, default=MAX_WEIGHTS_MB, help="largest allowed weights file")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Features, fit, threshold, rates; store the statistics unless `--no-store`. Returns the results record."""
    started = time.perf_counter()
    model = UsvclForImageClassification.from_pretrained(args.model, dtype=torch.float32).eval()
    processor = load_processor(args.model, model.config)
    splits = bus_bra_items(args.bus_bra, args.max_patients, args.seed)
    bus_bra = {name: image_features(model, processor, items, f"BUS-BRA {name}") for name, items in splits.items()}
    lung = {name: clip_features(model, processor, folder, args.frames_per_clip, name)
            for name, folder in parse_named_folders(args.lung_clips).items()}
    density = fit_density(bus_bra["fit"].features, args.components).eval()
    record = measure(density, bus_bra, lung, args.false_alarm_rate, args.seed)
    if not args.no_store:
        rewrite_classifier_folder(args.model, attach(density, record["threshold"]), args.max_size_mb)
    record.update({
        "model": args.model.name, "components": args.components, "false_alarm_rate_target": args.false_alarm_rate,
        "frames_per_clip": args.frames_per_clip, "seed": args.seed, "split_shares": SPLIT_SHARES,
        "max_patients": args.max_patients, "stored_in_model": not args.no_store,
        "command": run_command("training.ood"), "commit": git_commit(),
        "machine": machine_description(), "wall_time_s": round(time.perf_counter() - started, 1),
    })
    return record


def main(argv: list[str] | None = None) -> int:
    """Run; log where the statistics and the results went. Returns the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging()
    usvcl_hf.register_auto_classes()
    output = args.output or REPO_ROOT / "experiments" / "out_of_distribution" / "results" / f"{args.model.name}.json"
    try:
        record = run(args)
    except (ExportError, ClipReadError, OSError) as error:
        LOGGER.error("ood failed: %s", error)
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")
    report = record["bus_bra_false_alarms"]["report"]
    LOGGER.info("threshold %.3f: false alarms on held-out BUS-BRA %.3f; lung clips flagged: %s", record["threshold"],
                report["value"], {name: round(entry["clips"]["value"], 3)
                                  for name, entry in record["lung_detection"].items()})
    where = f"statistics stored in {args.model}, " if record["stored_in_model"] else ""
    LOGGER.info("%sresults written to %s", where, output)
    return 0 if math.isfinite(record["threshold"]) else 1


if __name__ == "__main__":
    sys.exit(main())
