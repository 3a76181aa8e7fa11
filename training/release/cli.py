"""`python -m training.release`: options, the recipes, the plan, the steps."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import usvcl_hf
from training.logs import setup_logging
from training.release.choice_steps import pool_classifiers, record_two_views
from training.release.context import Context
from training.release.folder_steps import add_companions, add_ood, check_folders, export, package
from training.release.recipes import REPO_ROOT, ReleaseError, load_recipes
from training.release.runner import Step, run_steps
from training.release.training_steps import (
    collect_boxes,
    prepare_store,
    train_crops,
    train_segmenters,
    train_whole,
)

LOGGER = logging.getLogger(__name__)
DEFAULT_WORK, SMOKE_WORK = Path("runs/release"), Path("runs/release_smoke")
DEFAULT_DATA = Path("../shared/data")
STEPS = [
    Step("store", "the prepared store (smoke: synthetic BUS-BRA-shaped data, built)", prepare_store),
    Step("lesion", "lesion segmenter: folds + final model", train_segmenters),
    Step("boxes", "the segmenter folds' lesion boxes, for the crop view", collect_boxes),
    Step("whole", "whole-image classifier: folds for each seed + final model", train_whole),
    Step("crop", "lesion-crop classifier: folds + final model, boxes from the fold segmenters", train_crops),
    Step("pool", "each classifier's folds pooled, with the choices its recipe names", pool_classifiers),
    Step("two_view", "the recorded two-view choice, into the results files", record_two_views),
    Step("package", "training.export of every folder with its card", package),
    Step("ood", "out-of-distribution statistics of the whole-image classifier", add_ood),
    Step("companions", "the classifier's config names its lesion and crop companions", add_companions),
    Step("check", "every folder loads and follows its recipe", check_folders),
    Step("export", "the checked folders into --output (the only step that writes there)", export),
]


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m training.release",
        description="Build the shipped model folders from a prepared BUS-BRA store, step by step and resumably, "
        "from the recipes in training/recipes/.")
    parser.add_argument("--store", type=Path, help="the prepared BUS-BRA store (training.prepare_data images)")
    parser.add_argument("--output", type=Path, required=True, help="where the model folders go, e.g. models/")
    parser.add_argument("--work", type=Path, help=f"step outputs (default {DEFAULT_WORK}; smoke: {SMOKE_WORK})")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"raw data root for the OOD statistics: BUS-BRA and lung clips (default {DEFAULT_DATA})")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny synthetic data and tiny backbones (training/recipes/smoke.yaml), a few minutes")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--from", dest="start", metavar="STEP", choices=[step.name for step in STEPS],
                       help="run this step and every later one again; steps: " + ", ".join(step.name for step in STEPS))
    which.add_argument("--only", metavar="STEP", choices=[step.name for step in STEPS], help="run only this step")
    return parser


def make_context(args: argparse.Namespace) -> Context:
    """The run's recipes and folders from the options (smoke: the store and data inside the work folder)."""
    work = (args.work or (SMOKE_WORK if args.smoke else DEFAULT_WORK)).resolve()
    if args.smoke and args.output.resolve() == REPO_ROOT / "models":
        raise ReleaseError(f"--smoke --output {args.output}: the tiny smoke models would replace the shipped ones; "
                           "give another folder")
    if args.smoke:
        store, data = work / "store" / "bus_bra_store", work / "store" / "data"
    elif args.store is None:
        raise ReleaseError("--store is required (or --smoke)")
    else:
        store, data = args.store.resolve(), args.data.resolve()
    return Context(load_recipes(smoke=args.smoke), work, args.output.resolve(), store, data, args.smoke)


def main(argv: list[str] | None = None) -> int:
    """Run the release; returns the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging()
    usvcl_hf.register_auto_classes()
    started = time.perf_counter()
    try:
        context = make_context(args)
        ran = run_steps(context, STEPS, args.start, args.only)
    except ReleaseError as error:
        LOGGER.error("release failed: %s", error)
        return 1
    LOGGER.info("release finished in %.1f s (steps run: %s); folders in %s", time.perf_counter() - started,
                ", ".join(ran) or "none", context.output)
    return 0


__all__ = ["STEPS", "build_parser", "main"]
