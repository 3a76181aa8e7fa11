"""What every step of the release reads: the recipes and the folders of one run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from training.release.recipes import Recipe, ReleaseError


@dataclasses.dataclass(frozen=True)
class Context:
    """One release run: recipes by name, the work folder (a subfolder per step), the output folder (written by the
    export step only), the prepared store, the raw data root (OOD statistics) and whether it is the smoke run."""

    recipes: dict[str, Recipe]
    work: Path
    output: Path
    store: Path
    data: Path
    smoke: bool = False

    def step_dir(self, step: str) -> Path:
        """`WORK/<step>`: where a step writes, and nothing else does."""
        return self.work / step

    def of_kind(self, kind: str) -> list[Recipe]:
        """The recipes of one kind, in training order."""
        return [recipe for recipe in self.recipes.values() if recipe.kind == kind]

    def repo_id(self, name: str) -> str:
        """The Hub id a recipe names for its model."""
        return self.recipes[name].repo_id


def read_json(path: Path) -> Any:
    """A JSON file a step needs, or a ReleaseError naming it (and the step that writes it)."""
    if not path.is_file():
        raise ReleaseError(f"{path}: missing (has the step that writes it run? see `--from`)")
    return json.loads(path.read_text())


__all__ = ["Context", "read_json"]
