"""The bundled model folders are exactly what `python -m training.export.refresh models/*/` writes from what they
record, and their cards state computed facts in the project's own words."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from tests.helpers.paths import REPO_ROOT
from training.export import refresh as refresh_export
from training.export.cards import final_training, fold_list, shipped_calibration
from training.export.exports import CLASSIFIER_ONLY_FIELDS

MODELS = REPO_ROOT / "models"
CARD_TEMPLATES = [REPO_ROOT / name for name in ("model_card.md", "lesion_card.md", "backbone_card.md")]
HISTORY_WORDS = re.compile(r"session \d|\bcpu\d+_|recipe [A-Z]\b|\blanes?\b|\bdoors?\b|\barms?\b|\bpart\d", re.I)


def bundled_folders() -> list[Path]:
    return sorted(path for path in MODELS.iterdir() if (path / "export_check.json").is_file())


@pytest.mark.slow
def test_reexporting_the_bundled_folders_gives_the_same_bytes(tmp_path: Path) -> None:
    """Every file, weights included: the half-precision weights load as float32 and are stored again bit for bit,
    the config, code, card, check and timm file are rendered again from the folder's own record."""
    copy = tmp_path / "models"
    shutil.copytree(MODELS, copy)
    folders = [copy / folder.name for folder in bundled_folders()]
    assert refresh_export.main([str(folder) for folder in folders]) == 0
    for folder in bundled_folders():
        committed = sorted(path.name for path in folder.iterdir())
        assert sorted(path.name for path in (copy / folder.name).iterdir()) == committed, folder.name
        for name in committed:
            assert (copy / folder.name / name).read_bytes() == (folder / name).read_bytes(), f"{folder.name}/{name}"


def test_the_bundled_backbone_carries_no_classifier_fields() -> None:
    config = json.loads((MODELS / "usvcl-backbone" / "config.json").read_text())
    assert not set(config) & set(CLASSIFIER_ONLY_FIELDS)
    inputs = json.loads((MODELS / "usvcl-backbone" / "export_check.json").read_text())["export_inputs"]
    assert inputs["source_model"] == "usvcl-lite0-busbra"


@pytest.mark.parametrize("path", [*CARD_TEMPLATES, *(folder / "README.md" for folder in bundled_folders())],
                         ids=lambda path: f"{path.parent.name}/{path.name}")
def test_cards_speak_of_what_things_are(path: Path) -> None:
    found = HISTORY_WORDS.findall(path.read_text())
    assert not found, f"{path}: {found}"


def test_card_facts_are_computed_from_the_results() -> None:
    whole = json.loads((MODELS / "usvcl-lite0-busbra" / "results.json").read_text())
    crops = json.loads((MODELS / "usvcl-lite0-crops-busbra" / "results.json").read_text())
    best = {fold["fold"]: fold["best_epoch"] for fold in whole["folds"]}
    assert final_training(whole) == {"epochs": f"{(best[4] + best[5]) / 2:g}", "folds": "folds 4 and 5"}
    assert final_training(crops) == {"epochs": str(crops["final_model"]["epochs"]), "folds": "folds 1–5"}
    assert fold_list([2]) == "fold 2" and fold_list([1, 3]) == "folds 1 and 3"
    shipped = shipped_calibration(whole)
    assert shipped["method"] == "temperature and bias"
    own_row = next(row for row in whole["two_view"]["rows"] if row["candidate"] == "whole image, recalibrated")
    assert shipped["ece"] == own_row["ece"] and shipped["temperature_only"].startswith(
        f"{whole['pooled']['ece_after']['value']:.3f}")
    assert shipped_calibration(crops)["temperature_only"] == ""  # its folds were calibrated the shipped way


def test_rendered_cards_state_the_facts_once() -> None:
    whole = (MODELS / "usvcl-lite0-busbra" / "README.md").read_text()
    crops = (MODELS / "usvcl-lite0-crops-busbra" / "README.md").read_text()
    assert "**13 epochs**" in whole and "folds 4 and 5" in whole and "same settings" not in whole
    assert "| ECE, temperature and bias (the calibration shipped) | 0.024 |" in whole
    assert "**21 epochs**" in crops and "128×128 px" in crops and "192×192" not in crops
    for folder in bundled_folders():
        text = (folder / "README.md").read_text()
        assert " MB" not in text.replace("<= 20 MB", ""), f"{folder.name}: one size unit (MiB)"
        card = ModelCard(text)
        assert card.data.license and card.data.pipeline_tag
    eces = [result for result in ModelCard(whole).data.eval_results if result.metric_type == "ece"]
    assert [result.metric_value for result in eces] == [0.024]
