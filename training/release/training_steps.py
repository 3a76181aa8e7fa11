"""The training steps: the store, the lesion segmenter, its per-fold boxes, and the classifiers of each view.

Each calls the training command's own entry point (`training.prepare_data`, `training.lesion.train`,
`training.finetune`) with the recipe's fields written as a YAML config beside its outputs (`<run>.yaml`).
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from training.release.context import Context, read_json
from training.release.recipes import Recipe, ReleaseError

LOGGER = logging.getLogger(__name__)
SMOKE_STORED_SIZE = 64  # px, the longer side of the smoke store's images


def write_config(path: Path, values: dict[str, Any]) -> Path:
    """The fields of one training run as the YAML file its `--config` reads."""
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def prepare_store(context: Context) -> None:
    """Smoke: write the synthetic BUS-BRA-shaped folder and a lung clip under `context.data`, build the store.
    Real: check that the store and the data folder exist."""
    if not context.smoke:
        for path, what in ((context.store, "--store"), (context.data, "--data")):
            if not path.is_dir():
                raise ReleaseError(f"{path}: no such folder ({what})")
        return
    from training.prepare_data import main as prepare_data
    from training.release.smoke_data import write_smoke_data

    oods = [recipe.get("ood") for recipe in context.recipes.values() if recipe.get("ood")]
    lung = tuple(dict.fromkeys(path for ood in oods for path in ood["lung_clips"].values()))
    bus_bra = write_smoke_data(context.data, oods[0]["bus_bra"] if oods else "bus_bra", lung)
    status = prepare_data(["images", "--input", str(bus_bra), "--output", str(context.store), "--workers", "1",
                           "--stored-size", str(SMOKE_STORED_SIZE)])
    if status != 0:
        raise ReleaseError(f"{context.store}: training.prepare_data failed (exit {status})")


def lesion_run(context: Context, recipe: Recipe) -> Path:
    """The segmenter recipe's run folder (folds + final model)."""
    return context.step_dir("lesion") / recipe.name


def train_segmenters(context: Context) -> None:
    """Every lesion recipe: its folds (each writes the boxes of its validation and test images) and final model."""
    from training.config import load_config
    from training.lesion.train import LesionTrainConfig, training_function

    for recipe in context.of_kind("lesion"):
        output = lesion_run(context, recipe)
        values = {**recipe.train, "store_path": str(context.store), "output_dir": str(output), "final_model": True}
        config = write_config(context.step_dir("lesion") / f"{recipe.name}.yaml", values)
        LOGGER.info("training the segmenter %s (%s)", recipe.name, config)
        training_function(load_config(LesionTrainConfig, ["--config", str(config)]))


def boxes_file(context: Context, name: str) -> Path:
    """`WORK/boxes/<segmenter>.csv`: the per-fold boxes the crop classifiers validate and test on."""
    return context.step_dir("boxes") / f"{name}.csv"


def collect_boxes(context: Context) -> None:
    """Each segmenter's boxes.csv, checked to hold every fold its run trained, into the boxes step's folder."""
    for recipe in context.of_kind("lesion"):
        run = lesion_run(context, recipe)
        source = run / "boxes.csv"
        folds = {int(fold["fold"]) for fold in read_json(run / "results.json")["folds"]}
        if not source.is_file():
            raise ReleaseError(f"{source}: missing (the segmenter's fold runs write it)")
        with source.open(newline="") as handle:
            boxed = {int(row["fold"]) for row in csv.DictReader(handle)}
        if boxed != folds:
            raise ReleaseError(f"{source}: boxes of folds {sorted(boxed)}, the run trained folds {sorted(folds)}")
        shutil.copyfile(source, boxes_file(context, recipe.name))


def classifier_run(context: Context, recipe: Recipe, seed: int) -> Path:
    """A classifier recipe's run folder for one training seed."""
    step = "crop" if recipe.get("boxes_from") else "whole"
    return context.step_dir(step) / recipe.name / f"seed{seed}"


def finetune_values(context: Context, recipe: Recipe, seed: int) -> dict[str, Any]:
    """training.finetune fields of one seed: the first seed trains the final model; the others share its inner
    validation splits (`split_seed`) and train the folds only."""
    first = recipe.seeds[0]
    values = {**recipe.train, "store_path": str(context.store), "seed": seed,
              "output_dir": str(classifier_run(context, recipe, seed)), "final_model": seed == first}
    if seed != first:
        values["split_seed"] = values.get("split_seed", first)
    if recipe.get("boxes_from"):
        values["eval_boxes"] = [str(boxes_file(context, recipe.get("boxes_from")))]
    return values


def train_classifiers(context: Context, crops: bool) -> None:
    """Every classifier recipe of one kind of view (lesion crops or not), every seed."""
    from training.finetune import main as finetune

    for recipe in context.of_kind("classifier"):
        if bool(recipe.get("boxes_from")) != crops:
            continue
        for seed in recipe.seeds:
            run = classifier_run(context, recipe, seed)
            run.parent.mkdir(parents=True, exist_ok=True)
            config = write_config(run.parent / f"seed{seed}.yaml", finetune_values(context, recipe, seed))
            LOGGER.info("training the classifier %s, seed %d (%s)", recipe.name, seed, config)
            finetune(["--config", str(config)])


def train_whole(context: Context) -> None:
    """The classifiers of whole images."""
    train_classifiers(context, crops=False)


def train_crops(context: Context) -> None:
    """The classifiers of lesion crops, validated and tested on their segmenter's per-fold boxes."""
    train_classifiers(context, crops=True)


__all__ = ["classifier_run", "collect_boxes", "lesion_run", "prepare_store", "train_crops", "train_segmenters",
           "train_whole"]
