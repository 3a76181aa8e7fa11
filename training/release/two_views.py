"""The two-view choice as recorded: an `ensembles` table of experiments/report.yaml (chosen on inner validation,
never a test fold), its rows read from the committed results file that recorded them (`two_view.recorded_in` of a
recipe), checked to choose the recipe's candidate. `recomputed_rows` builds the table again from the committed
predictions (minutes: paired bootstraps), which the real run's check step compares with the record (rows added to
the table later, never chosen, are allowed)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from training.release.context import read_json
from training.release.recipes import Recipe, ReleaseError, repo_path

LOGGER = logging.getLogger(__name__)
CHOSEN = "**chosen**"  # the `choice` cell of the chosen row (experiments.report.ensemble_comparison)


def table_spec(recipe: Recipe) -> dict[str, Any]:
    """The recipe's ensembles table as experiments/report.yaml declares it."""
    from experiments import report

    spec_path = repo_path(report.DEFAULT_SPEC)
    table = report.load_spec(spec_path)["tables"].get(recipe.get("two_view")["table"])
    if not table or table.get("kind") != "ensembles":
        raise ReleaseError(f"{spec_path}: no ensembles table {recipe.get('two_view')['table']!r} ({recipe.path})")
    return table


def recorded_rows(recipe: Recipe) -> list[dict[str, str]]:
    """The table's rows as recorded, checked to choose the recipe's `chosen` candidate."""
    two_view = recipe.get("two_view")
    path = repo_path(two_view["recorded_in"])
    record = read_json(path).get("two_view") or {}
    if f"`{two_view['table']}`" not in record.get("source", ""):
        raise ReleaseError(f"{path}: records no two-view choice from table {two_view['table']!r}")
    label = table_spec(recipe)["candidates"][two_view["chosen"]]["label"]
    chosen = [row["candidate"] for row in record["rows"] if row["choice"] == CHOSEN]
    if chosen != [label]:
        raise ReleaseError(f"{path}: table {two_view['table']} chose {chosen}, not {label!r} ({recipe.path})")
    return record["rows"]


def record_choice(recipe: Recipe, results_path: Path) -> None:
    """Write the choice and the `two_view` block into one results file (experiments.record_two_view.record)."""
    from experiments import record_two_view

    two_view = recipe.get("two_view")
    record_two_view.record(results_path, two_view["role"], two_view["table"], table_spec(recipe),
                           recorded_rows(recipe))


def recomputed_rows(recipe: Recipe) -> list[dict[str, str]]:
    """The table computed again from the committed predictions, in the recorded rows' columns."""
    from experiments import record_two_view, report

    _, rows = record_two_view.comparison(report.DEFAULT_SPEC, recipe.get("two_view")["table"], repo_path("."))
    return [{key: row[key] for key in report.ENSEMBLE_HEADERS} for row in rows]


def check_record(recipe: Recipe) -> None:
    """Raise unless every recorded row (the chosen one among them) is in the table computed again; rows the table
    gained after the choice was recorded (candidates compared later, never chosen) are logged."""
    two_view = recipe.get("two_view")
    recorded, current = recorded_rows(recipe), recomputed_rows(recipe)
    changed = [row["candidate"] for row in recorded if row not in current]
    if changed:
        raise ReleaseError(f"{repo_path(two_view['recorded_in'])}: rows {changed} differ from table "
                           f"{two_view['table']} computed again (python -m experiments.report)")
    added = [row["candidate"] for row in current if row not in recorded]
    if added:
        LOGGER.info("table %s gained rows after the choice was recorded: %s", two_view["table"], added)


__all__ = ["check_record", "recomputed_rows", "record_choice", "recorded_rows"]
