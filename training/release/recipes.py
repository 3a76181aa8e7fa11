"""The recipes of the shipped models (`training/recipes/<name>.yaml`, one file a model) and the `--smoke` profile.

A recipe is a YAML mapping: `name`, `kind` (`lesion` or `classifier`), `repo_id`, `train` (the training command's
fields; classifiers start from `base_config`), and for classifiers `view`, `seeds`, `calibration`, `boxes_from`,
`choices`, `recorded_choices`, `two_view`, `ood` and `companions` (see the files). The smoke profile
(`training/recipes/smoke.yaml`) overrides sizes only: the `train` fields of each kind, the folds, the OOD sizes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPE_DIR = REPO_ROOT / "training" / "recipes"
SMOKE_PROFILE = RECIPE_DIR / "smoke.yaml"
SHIPPED = ("usvcl-lesion-busbra", "usvcl-lite0-busbra", "usvcl-lite0-crops-busbra")  # in training order
KINDS = ("lesion", "classifier")


class ReleaseError(RuntimeError):
    """A recipe, an input or a step's output is not what the release needs; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One shipped model's recipe (a recipe file, possibly with the smoke profile applied)."""

    name: str
    kind: str
    repo_id: str
    train: dict[str, Any]  # the training command's fields (base_config's first, the recipe's on top)
    spec: dict[str, Any]  # the whole recipe file (view, seeds, choices, two_view, ood, companions ...)
    path: Path

    def get(self, key: str, default: Any = None) -> Any:
        """A recipe field (`spec`)."""
        return self.spec.get(key, default)

    @property
    def seeds(self) -> list[int]:
        """Training seeds; the first trains the final model."""
        return [int(seed) for seed in self.spec.get("seeds") or [self.train.get("seed", 42)]]

    @property
    def ood_components(self) -> int:
        """Principal directions of the out-of-distribution model (0: none)."""
        return int((self.spec.get("ood") or {}).get("components", 0))


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping, or a ReleaseError naming the file."""
    if not path.is_file():
        raise ReleaseError(f"{path}: no such recipe file")
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, dict):
        raise ReleaseError(f"{path}: a recipe must be a YAML mapping, got {type(values).__name__}")
    return values


def repo_path(value: str | Path) -> Path:
    """A path a recipe names, relative to the repository root."""
    path = Path(value)
    return path if path.is_absolute() else REPO_ROOT / path


def load_recipe(name: str, recipe_dir: Path = RECIPE_DIR, smoke: dict[str, Any] | None = None) -> Recipe:
    """The recipe `recipe_dir/<name>.yaml`, with the smoke profile's overrides when given."""
    path = recipe_dir / f"{name}.yaml"
    spec = read_yaml(path)
    for key in ("name", "kind", "repo_id", "train"):
        if key not in spec:
            raise ReleaseError(f"{path}: the recipe lacks `{key}`")
    if spec["name"] != name or spec["kind"] not in KINDS:
        raise ReleaseError(f"{path}: name must be {name!r} and kind one of {KINDS}, got {spec['name']!r}, "
                           f"{spec['kind']!r}")
    train = dict(read_yaml(repo_path(spec["base_config"]))) if spec.get("base_config") else {}
    train.update(spec["train"])
    if smoke is not None:
        train.update(smoke.get(spec["kind"]) or {})
        if spec.get("ood"):
            spec = {**spec, "ood": {**spec["ood"], **(smoke.get("ood") or {})}}
    if smoke is not None and smoke.get("folds"):
        train["folds"] = list(smoke["folds"])
    return Recipe(name, spec["kind"], spec["repo_id"], train, spec, path)


def load_recipes(smoke: bool = False, recipe_dir: Path = RECIPE_DIR) -> dict[str, Recipe]:
    """Every shipped model's recipe by name, in training order (`SHIPPED`)."""
    profile = read_yaml(SMOKE_PROFILE) if smoke else None
    recipes = {name: load_recipe(name, recipe_dir, profile) for name in SHIPPED}
    for recipe in recipes.values():
        for role, companion in (recipe.get("companions") or {}).items():
            if companion not in recipes:
                raise ReleaseError(f"{recipe.path}: companion {role} {companion!r} is not a shipped recipe")
        if recipe.get("boxes_from") and recipes.get(recipe.get("boxes_from")) is None:
            raise ReleaseError(f"{recipe.path}: boxes_from {recipe.get('boxes_from')!r} is not a shipped recipe")
    return recipes


__all__ = ["KINDS", "RECIPE_DIR", "REPO_ROOT", "SHIPPED", "Recipe", "ReleaseError", "load_recipe", "load_recipes",
           "repo_path"]
