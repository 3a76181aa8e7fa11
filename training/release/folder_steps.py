"""The steps that make the shipped folders: package (training.export), OOD statistics, companions, the check, and
export into `--output`, the only step that writes there.

Each step copies the previous step's folders into its own (`WORK/<step>/<name>`) and changes only the copy, so a
rerun of any of them starts from its predecessor's finished outputs.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from training.atomic import atomic_folder
from training.release.choice_steps import RESULTS, two_view_dir
from training.release.context import Context, read_json
from training.release.fields import recipe_mismatches
from training.release.recipes import ReleaseError, repo_path
from training.release.training_steps import classifier_run, lesion_run
from training.release.two_views import check_record

LOGGER = logging.getLogger(__name__)
# the training.export.ood options a recipe may set
OOD_OPTIONS = ("frames_per_clip", "max_patients", "false_alarm_rate", "seed")


def folder(context: Context, step: str, name: str) -> Path:
    """`WORK/<step>/<name>`: one model's folder as that step left it."""
    return context.step_dir(step) / name


def copy_folders(context: Context, source: str, target: str) -> None:
    """Every model's folder of step `source` into step `target`."""
    for name in context.recipes:
        shutil.copytree(folder(context, source, name), folder(context, target, name))


def package(context: Context) -> None:
    """training.export of every recipe: the segmenter from its run, each classifier from its first seed's final
    model and its results.json with the recorded choices (card rendered from it)."""
    from training.export import export_classifier, export_lesion

    for recipe in context.recipes.values():
        output = folder(context, "package", recipe.name)
        if recipe.kind == "lesion":
            run = lesion_run(context, recipe)
            export_lesion(run / "final_model", run / "results.json", output, repo_id=recipe.repo_id)
        else:
            final_model = classifier_run(context, recipe, recipe.seeds[0]) / "final_model"
            export_classifier(final_model, two_view_dir(context, recipe) / RESULTS, output, repo_id=recipe.repo_id)
        LOGGER.info("packaged %s", output)


def ood_arguments(context: Context, name: str) -> list[str]:
    """training.export.ood's options for one classifier: its data under `--data`, results beside its folder."""
    recipe = context.recipes[name]
    ood = recipe.get("ood")
    lung = [f"{key}={context.data / path}" for key, path in ood["lung_clips"].items()]
    arguments = ["--model", str(folder(context, "ood", name)), "--bus-bra", str(context.data / ood["bus_bra"]),
                 "--lung-clips", *lung, "--components", str(recipe.ood_components),
                 "--output", str(context.step_dir("ood") / f"{name}.json")]
    for key in OOD_OPTIONS:
        if key in ood:
            arguments += [f"--{key.replace('_', '-')}", str(ood[key])]
    return arguments


def add_ood(context: Context) -> None:
    """Out-of-distribution statistics (training.export.ood) into each classifier whose recipe asks for them; card
    again."""
    from training.export import ood, rerender_classifier_card

    copy_folders(context, "package", "ood")
    for recipe in context.of_kind("classifier"):
        if recipe.ood_components <= 0:
            continue
        if ood.main(ood_arguments(context, recipe.name)) != 0:
            raise ReleaseError(f"{recipe.path}: training.export.ood failed for {recipe.name} (see the log above)")
        target = folder(context, "ood", recipe.name)
        rerender_classifier_card(target, target / RESULTS, repo_id=recipe.repo_id)


def add_companions(context: Context) -> None:
    """Name each classifier's two-view companions (their recipes' Hub ids) and the pipeline that loads them."""
    from training.export.refresh import folder_update, rewrite_classifier_folder

    copy_folders(context, "ood", "companions")
    for recipe in context.of_kind("classifier"):
        companions = recipe.get("companions")
        if companions:
            ids = [context.repo_id(companions[role]) for role in ("lesion_model", "crop_model")]
            rewrite_classifier_folder(folder(context, "companions", recipe.name), folder_update(ids))
            LOGGER.info("%s names its companions %s", recipe.name, ids)


def check_folder(context: Context, name: str, location: Path) -> None:
    """Load the folder as the demo does; compare its config.json and results.json with the recipe."""
    from usvcl_hf.runtime.clip_prediction import load_model
    from usvcl_hf.runtime.lesion import load_lesion_model

    recipe = context.recipes[name]
    (load_lesion_model if recipe.kind == "lesion" else load_model)(location)
    results = read_json(location / RESULTS) if (location / RESULTS).is_file() else {}
    problems = recipe_mismatches(recipe, context.recipes, read_json(location / "config.json"), results)
    if problems:
        raise ReleaseError(f"{location} does not follow {recipe.path}:\n  " + "\n  ".join(problems))


def check_folders(context: Context) -> None:
    """Every finished folder loads and follows its recipe; the companions each classifier names are shipped."""
    for name in context.recipes:
        check_folder(context, name, folder(context, "companions", name))
    shipped = {recipe.repo_id for recipe in context.recipes.values()}
    for recipe in context.of_kind("classifier"):
        config = read_json(folder(context, "companions", recipe.name) / "config.json")
        missing = set((config.get("two_view_models") or {}).values()) - shipped
        if missing:
            raise ReleaseError(f"{recipe.name} names companions that are not shipped: {sorted(missing)}")
    summary = {name: "loads, follows its recipe" for name in context.recipes}
    if not context.smoke:
        report_check(context)
        summary["report"] = "experiments.report --check passes; the recorded two-view rows computed again"
    (context.step_dir("check") / "check.json").write_text(json.dumps(summary, indent=2) + "\n")


def report_check(context: Context) -> None:
    """The real run only (it reads the committed predictions, not the smoke run's; about 20 min on 2 cores): every
    docs table is current (`python -m experiments.report --check`) and each recorded two-view choice is the table
    computed again."""
    from experiments import report

    root = repo_path(".")
    stale = report.check(report.stale_documents(report.load_spec(root / report.DEFAULT_SPEC), root))
    if stale:
        raise ReleaseError(f"python -m experiments.report --check: stale documents {sorted(map(str, stale))}")
    tables = {recipe.get("two_view")["table"]: recipe for recipe in context.of_kind("classifier")
              if recipe.get("two_view")}
    for recipe in tables.values():
        check_record(recipe)


def export(context: Context) -> None:
    """The checked folders into `--output/<name>`, each replaced atomically."""
    for name in context.recipes:
        with atomic_folder(context.output / name) as staging:
            shutil.copytree(folder(context, "companions", name), staging, dirs_exist_ok=True)
        LOGGER.info("exported %s", context.output / name)


__all__ = ["add_companions", "add_ood", "check_folders", "export", "package"]
