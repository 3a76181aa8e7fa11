"""An exported folder named for another Hub repository: its card rendered again with the new id, and a whole-image
model's two-view companions (`config.two_view_models`) named under the same owner. Used by
`training.publish.push_to_hub` on its staged copies; the weights, the check and the results are untouched."""

from __future__ import annotations

import json
from pathlib import Path

from training.export.base import CHECK_FILE, RESULTS_COPY, ExportError, read_json
from training.export.cards import companion_id
from training.export.checks import recorded_export_inputs
from training.export.exports import rerender_classifier_card
from training.export.lesion import rerender_lesion_card


def companion_ids(folder: Path, repo_id: str) -> dict[str, str]:
    """`{role: Hub id}` of the companions the folder's config names, under the owner of `repo_id` (or `{}`)."""
    named = read_json(folder / "config.json").get("two_view_models") or {}
    return {role: companion_id(repo_id, recorded) for role, recorded in named.items()}


def name_companions(folder: Path, companions: dict[str, str]) -> None:
    """Write `companions` into the folder's config.json `two_view_models` (same JSON layout as `save_pretrained`)."""
    path = folder / "config.json"
    config = read_json(path)
    config["two_view_models"] = dict(sorted(companions.items()))
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def retarget_folder(folder: Path, repo_id: str) -> dict[str, str]:
    """Name the folder (card, companions) for `repo_id`; return the companions' ids (`{}` when it has none)."""
    kind = read_json(folder / CHECK_FILE)["kind"]
    inputs = recorded_export_inputs(folder)
    companions = companion_ids(folder, repo_id) if kind == "classifier" else {}
    if companions:
        name_companions(folder, companions)
    if kind == "classifier":
        rerender_classifier_card(folder, folder / RESULTS_COPY, None, inputs.get("pretrain_data"),
                                 inputs.get("license_id"), inputs.get("code_url"), repo_id)
    elif kind == "lesion":
        rerender_lesion_card(folder, repo_id, inputs.get("license_id"))
    elif kind != "backbone":
        raise ExportError(f"{folder}: unknown kind {kind!r} in {CHECK_FILE}")
    return companions


__all__ = ["companion_ids", "name_companions", "retarget_folder"]
