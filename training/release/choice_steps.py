"""The steps between training and export: each classifier's runs pooled into one results file with the choices its
recipe names, then the two-view choice recorded in it (the files its card is rendered from)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from training.atomic import write_json_atomic
from training.release.context import Context, read_json
from training.release.recipes import Recipe, ReleaseError, repo_path
from training.release.training_steps import classifier_run
from training.release.two_views import record_choice

LOGGER = logging.getLogger(__name__)
RESULTS = "results.json"


def pooled_dir(context: Context, recipe: Recipe) -> Path:
    """`WORK/pool/<name>`: the classifier's results.json and figures from its first seed's folds."""
    return context.step_dir("pool") / recipe.name


def recorded_choices(recipe: Recipe, present: list[dict]) -> list[dict]:
    """The choices made on inner validation that the recipe's `recorded_choices` file holds and `present` lacks
    (the two-view choice is left to its own step)."""
    from experiments.record_two_view import CHOICE as TWO_VIEW_CHOICE

    if not recipe.get("recorded_choices"):
        return []
    path = repo_path(recipe.get("recorded_choices"))
    known = {choice["choice"] for choice in present} | {TWO_VIEW_CHOICE}
    return [choice for choice in read_json(path).get("choices", []) if choice["choice"] not in known]


def choice_files(recipe: Recipe) -> list[Path]:
    """The recipe's files of choices fixed in advance, each checked to be a YAML list."""
    paths = [repo_path(name) for name in recipe.get("choices") or []]
    for path in paths:
        if not path.is_file() or not isinstance(yaml.safe_load(path.read_text()), list):
            raise ReleaseError(f"{path}: not a YAML list of choices ({recipe.path} names it)")
    return paths


def pool_classifiers(context: Context) -> None:
    """experiments/pool_predictions.py on each classifier's first-seed run, then its recorded choices."""
    from experiments import pool_predictions

    for recipe in context.of_kind("classifier"):
        output = pooled_dir(context, recipe)
        output.mkdir(parents=True)
        run = classifier_run(context, recipe, recipe.seeds[0])
        pool_predictions.main([str(run), "--output", str(output / "pooled.json"), "--results-json",
                               str(output / RESULTS), "--choices", *map(str, choice_files(recipe))])
        results = read_json(output / RESULTS)
        results["choices"] = [*results.get("choices", []), *recorded_choices(recipe, results.get("choices", []))]
        write_json_atomic(output / RESULTS, results)


def two_view_dir(context: Context, recipe: Recipe) -> Path:
    """`WORK/two_view/<name>`: the pooled folder with the two-view choice recorded in its results.json."""
    return context.step_dir("two_view") / recipe.name


def record_two_views(context: Context) -> None:
    """Copy each pooled folder; where the recipe names a two-view choice, write it into its results.json as
    recorded (training.release.two_views: refused when the table chose another candidate)."""
    for recipe in context.of_kind("classifier"):
        folder = two_view_dir(context, recipe)
        shutil.copytree(pooled_dir(context, recipe), folder)
        if recipe.get("two_view"):
            record_choice(recipe, folder / RESULTS)
            LOGGER.info("%s: two-view choice of table %s recorded", recipe.name, recipe.get("two_view")["table"])


__all__ = ["RESULTS", "pool_classifiers", "pooled_dir", "record_two_views", "two_view_dir"]
