"""`python -m training.release`: the smoke run end to end (three loadable folders, companions inside the output,
resumable steps), the recipes against the committed model folders, and the step plan."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT
from training.release import SHIPPED, load_recipe, load_recipes
from training.release.cli import STEPS
from training.release.context import Context
from training.release.fields import FIT_DEPENDENT, expected_config, recipe_mismatches
from training.release.recipes import RECIPE_DIR, ReleaseError
from training.release.runner import MARKER, plan

TIMEOUT_S = 1200
STEP_NAMES = [step.name for step in STEPS]


def release(*arguments: str) -> str:
    """`python -m training.release ARGS` from the repository root; its log (stderr), the test failing with it."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, "-m", "training.release", *arguments], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=TIMEOUT_S, env=environment)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-6000:]
    return completed.stderr


def steps_run(log: str) -> list[str]:
    """The steps the run's last line says it ran."""
    line = next(line for line in reversed(log.splitlines()) if "release finished" in line)
    listed = line.split("steps run: ", 1)[1].split(")", 1)[0]
    return [] if listed == "none" else listed.split(", ")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, Path, str]:
    """One smoke run: (output folder, work folder, log)."""
    root = tmp_path_factory.mktemp("release")
    output, work = root / "models", root / "work"
    log = release("--smoke", "--output", str(output), "--work", str(work))
    return output, work, log


@pytest.mark.slow
def test_smoke_run_builds_three_loadable_folders(smoke) -> None:
    from usvcl_hf.runtime.clip_prediction import load_model
    from usvcl_hf.runtime.lesion import load_lesion_model

    output, _, log = smoke
    assert steps_run(log) == STEP_NAMES
    assert sorted(path.name for path in output.iterdir()) == sorted(SHIPPED)
    lesion_model, _ = load_lesion_model(output / "usvcl-lesion-busbra")
    assert lesion_model.config.lesion_threshold is not None
    for name in ("usvcl-lite0-busbra", "usvcl-lite0-crops-busbra"):
        model, _ = load_model(output / name)
        assert model.config.threshold_in_logits and model.config.calibration_bias is not None
    crop_config = json.loads((output / "usvcl-lite0-crops-busbra" / "config.json").read_text())
    assert crop_config["lesion_crop_margin"] == pytest.approx(0.2)


@pytest.mark.slow
def test_smoke_classifier_names_its_companions_inside_the_output(smoke) -> None:
    from usvcl_hf.pipeline_usvcl import companion_location, load_companion
    from usvcl_hf.runtime.clip_prediction import load_model

    output, _, _ = smoke
    model, _ = load_model(output / "usvcl-lite0-busbra")
    companions = model.config.two_view_models
    assert set(companions) == {"lesion_model", "crop_model"}
    for role, name in companions.items():
        assert Path(companion_location(name, model)).parent == output, (role, name)
        load_companion(None, role, model)  # the kind each role needs
    results = json.loads((output / "usvcl-lite0-busbra" / "results.json").read_text())
    assert results["two_view"]["view"] == "whole image"


@pytest.mark.slow
def test_smoke_rerun_skips_finished_steps_and_from_reruns_the_rest(smoke) -> None:
    output, work, _ = smoke
    arguments = ("--smoke", "--output", str(output), "--work", str(work))
    lesion_marker = (work / "lesion" / MARKER).stat().st_mtime_ns
    assert steps_run(release(*arguments)) == []
    assert steps_run(release(*arguments, "--from", "export")) == ["export"]
    assert (work / "lesion" / MARKER).stat().st_mtime_ns == lesion_marker
    assert sorted(path.name for path in output.iterdir()) == sorted(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_recipe_reproduces_the_committed_folder(name) -> None:
    """The recipe fields of models/<name>/config.json and results.json (fields.py lists what is compared and what
    depends on the fit); nothing is trained."""
    recipes = load_recipes()
    folder = REPO_ROOT / "models" / name
    config = json.loads((folder / "config.json").read_text())
    results = json.loads((folder / "results.json").read_text())
    assert recipe_mismatches(recipes[name], recipes, config, results) == []
    expected = expected_config(recipes[name], recipes)
    assert {"backbone", "image_size"} <= set(expected) and "calibration_temperature" in FIT_DEPENDENT


SET_BY_SAVING = ("dtype", "transformers_version")  # written by save_pretrained / export, not by a recipe


def rendered_config(name: str, committed: dict, results: dict) -> dict:
    """The config.json the release would write for `name`, rendered from its recipe (the training fields as the
    training command fills them in) plus the committed folder's fit-dependent values (calibration, threshold,
    class weights, OOD threshold, presence score): weights aside, what the export writes."""
    from training.export import set_decision_rule, set_two_views
    from training.release.fields import training_fields
    from usvcl_hf import LesionConfig, UsvclConfig

    recipes = load_recipes()
    recipe, fields, final = recipes[name], training_fields(recipes[name]), results["final_model"]
    if recipe.kind == "lesion":
        names = ("backbone", "image_size", "decoder_channels", "dice_weight", "bce_weight", "presence_weight")
        config = LesionConfig(**{key: fields[key] for key in names}, presence_score=final["presence_score"],
                              lesion_threshold=final["lesion_threshold"], architectures=["LesionSegmentationModel"])
        return json.loads(config.to_json_string())
    names = ("backbone", "in_chans", "trainable_layers", "classifier_hidden_dim", "classifier_dropout", "image_size")
    config = UsvclConfig(**{key: fields[key] for key in names}, class_weights=committed["class_weights"],
                         ood_components=recipe.ood_components, ood_threshold=committed["ood_threshold"],
                         lesion_crop_margin=fields["crop_margin"] if fields["lesion_crop"] else None,
                         architectures=["UsvclForImageClassification"])
    set_decision_rule(config, final["temperature"], final["threshold"], final.get("calibration_bias", 0.0))
    if recipe.get("companions"):
        companions = recipe.get("companions")
        set_two_views(config, *(recipes[companions[role]].repo_id for role in ("lesion_model", "crop_model")))
    return json.loads(config.to_json_string())


@pytest.mark.parametrize("name", SHIPPED)
def test_the_config_rendered_from_each_recipe_equals_the_committed_one(name) -> None:
    folder = REPO_ROOT / "models" / name
    committed = json.loads((folder / "config.json").read_text())
    rendered = rendered_config(name, committed, json.loads((folder / "results.json").read_text()))
    differ = {key for key in set(rendered) | set(committed) if rendered.get(key) != committed.get(key)}
    assert differ <= set(SET_BY_SAVING), {key: (rendered.get(key), committed.get(key)) for key in differ}


def test_a_changed_recipe_no_longer_matches() -> None:
    recipes = load_recipes()
    whole = recipes["usvcl-lite0-busbra"]
    folder = REPO_ROOT / "models" / whole.name
    config = json.loads((folder / "config.json").read_text())
    results = json.loads((folder / "results.json").read_text())
    longer = dataclasses.replace(whole, train={**whole.train, "num_epochs": 25, "image_size": 224})
    problems = recipe_mismatches(longer, recipes, config, results)
    assert any("config.json image_size" in line for line in problems)
    assert any("results.json config.num_epochs" in line for line in problems)
    alone = dataclasses.replace(whole, spec={**whole.spec, "companions": None})
    assert any("two_view_models" in line for line in recipe_mismatches(alone, recipes, config, results))


def test_smoke_profile_changes_sizes_not_structure() -> None:
    real, smoke = load_recipes(), load_recipes(smoke=True)
    for name in SHIPPED:
        assert smoke[name].spec.keys() == real[name].spec.keys()
        assert smoke[name].train["folds"] == [1, 2] and smoke[name].train["num_epochs"] == 1
    crop = smoke["usvcl-lite0-crops-busbra"].train
    assert crop["lesion_crop"] and crop["crop_margin"] == 0.2 and crop["split_seed"] == 42
    assert smoke["usvcl-lite0-busbra"].ood_components == 2 and real["usvcl-lite0-busbra"].ood_components == 32


def test_a_bad_recipe_is_named(tmp_path) -> None:
    (tmp_path / "usvcl-lite0-busbra.yaml").write_text("name: usvcl-lite0-busbra\nkind: classifier\n")
    with pytest.raises(ReleaseError, match=r"usvcl-lite0-busbra\.yaml: the recipe lacks `repo_id`"):
        load_recipe("usvcl-lite0-busbra", tmp_path)
    with pytest.raises(ReleaseError, match="no such recipe file"):
        load_recipe("usvcl-unknown", RECIPE_DIR)


def test_plan_skips_finished_steps_and_reruns_from_a_step(tmp_path) -> None:
    context = Context({}, tmp_path, tmp_path / "models", tmp_path / "store", tmp_path / "data")
    for name in STEP_NAMES[:3]:
        (tmp_path / name).mkdir()
        (tmp_path / name / MARKER).write_text("{}")
    actions = dict((step.name, action) for step, action in plan(context, STEPS, None, None))
    assert [actions[name] for name in STEP_NAMES[:4]] == ["skip (done)"] * 3 + ["run"]
    actions = dict((step.name, action) for step, action in plan(context, STEPS, "lesion", None))
    assert actions["store"] == "skip (done)" and actions["lesion"] == "rerun" and actions["export"] == "run"
    actions = dict((step.name, action) for step, action in plan(context, STEPS, None, "boxes"))
    assert [name for name, action in actions.items() if not action.startswith("skip")] == ["boxes"]
    (tmp_path / "store" / MARKER).unlink()
    actions = dict((step.name, action) for step, action in plan(context, STEPS, None, None))
    assert actions["store"] == "run" and actions["lesion"] == "rerun"  # a later step reads what it writes
    with pytest.raises(ReleaseError, match="--from 'train': no such step"):
        plan(context, STEPS, "train", None)


def test_smoke_refuses_to_replace_the_shipped_models(caplog) -> None:
    from training.release.cli import main

    assert main(["--smoke", "--output", str(REPO_ROOT / "models")]) == 1
    assert "would replace the shipped ones" in caplog.text
