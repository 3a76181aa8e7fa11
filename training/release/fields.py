"""What a recipe fixes in the folders it ships, and what depends on the data and the fit (not compared).

`recipe_mismatches(recipe, config, results)` compares an exported folder's `config.json` and `results.json` with
the recipe, field by field; the release's check step runs it on the folders it built, and a test runs it on the
committed `models/*` folders (the recipe reproduces their recipe fields). Compared:

- config.json, every model: `backbone`, `image_size` (the recipe's training fields, the training command's defaults
  for the ones it leaves out); lesion: `decoder_channels`, `dice_weight`, `bce_weight`, `presence_weight`;
  classifiers: `classifier_hidden_dim`, `classifier_dropout`, `lesion_crop_margin` (the crop view), `ood_components`,
  `threshold_in_logits`, `two_view_models` (the companions' Hub ids) and whether the two-view pipeline is declared;
  the calibration kind (`calibration_bias` present with `temperature_and_bias`).
- results.json `config`: every training field the recipe sets (epochs, learning rate, EMA, TTA, seed, ...), except
  the paths and the folds of a run; the first seed is the one recorded.

Fit- or data-dependent, never compared: `calibration_temperature`, the value of `calibration_bias`,
`decision_threshold`, `class_weights`, `ood_threshold`, `lesion_threshold`, `presence_score`, the final model's
epochs (the folds' median best epoch), the weights, and `transformers_version`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from training.config import FinetuneConfig, build_config, config_to_dict
from training.lesion.train import LesionTrainConfig
from training.release.recipes import Recipe

RUN_FIELDS = ("store_path", "output_dir", "folds", "final_model", "eval_boxes", "final_from")  # per run, not recipe
LESION_FIELDS = ("backbone", "image_size", "decoder_channels", "dice_weight", "bce_weight", "presence_weight")
CLASSIFIER_FIELDS = ("backbone", "image_size", "classifier_hidden_dim", "classifier_dropout")
FIT_DEPENDENT = ("calibration_temperature", "calibration_bias (value)", "decision_threshold", "class_weights",
                 "ood_threshold", "lesion_threshold", "presence_score", "final_model.epochs", "weights",
                 "transformers_version")


def training_fields(recipe: Recipe) -> dict[str, Any]:
    """Every field of the recipe's training command: the recipe's values over the command's defaults."""
    if recipe.kind == "lesion":
        return dataclasses.asdict(LesionTrainConfig(**recipe.train))
    return config_to_dict(build_config(FinetuneConfig, dict(recipe.train)))


def expected_config(recipe: Recipe, recipes: dict[str, Recipe]) -> dict[str, Any]:
    """The config.json fields the recipe fixes (see the module docstring)."""
    values = training_fields(recipe)
    if recipe.kind == "lesion":
        return {name: values[name] for name in LESION_FIELDS}
    companions = recipe.get("companions")
    return {
        **{name: values[name] for name in CLASSIFIER_FIELDS},
        "lesion_crop_margin": values["crop_margin"] if values.get("lesion_crop") else None,
        "ood_components": recipe.ood_components,
        "threshold_in_logits": True,
        "two_view_models": {role: recipes[name].repo_id for role, name in companions.items()} if companions else None,
    }


def recipe_mismatches(recipe: Recipe, recipes: dict[str, Recipe], config: dict[str, Any],
                      results: dict[str, Any]) -> list[str]:
    """One line per field where the folder (its config.json, its results.json) differs from the recipe."""
    problems = [f"config.json {name}: {config.get(name)!r}, recipe {value!r}"
                for name, value in expected_config(recipe, recipes).items() if config.get(name) != value]
    if recipe.kind == "classifier":
        if bool(config.get("custom_pipelines")) != bool(recipe.get("companions")):
            problems.append(f"config.json custom_pipelines: {config.get('custom_pipelines')!r}, recipe companions "
                            f"{recipe.get('companions')!r}")
        if recipe.get("calibration") == "temperature_and_bias" and "calibration_bias" not in config:
            problems.append("config.json lacks calibration_bias; the recipe's calibration is temperature_and_bias")
    trained = results.get("config") or {}
    for name, value in recipe.train.items():
        if name not in RUN_FIELDS and trained.get(name) != value:
            problems.append(f"results.json config.{name}: {trained.get(name)!r}, recipe {value!r}")
    return problems


__all__ = ["FIT_DEPENDENT", "expected_config", "recipe_mismatches", "training_fields"]
