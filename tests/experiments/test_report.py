"""`python -m experiments.report`: the committed documents equal what the committed runs give, and every table kind
works on synthetic runs in the layouts the GPU runs use (one folder per seed, a `seed` column, part*/ folders,
label-efficiency draws)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments import report
from tests.helpers.paths import REPO_ROOT
from tests.helpers.predictions import FOLDS, IMAGES_PER_PATIENT, N_PATIENTS, synthetic_predictions
from training import evaluation

REPO = REPO_ROOT


def test_committed_documents_match_the_committed_runs() -> None:
    stale = "run `python -m experiments.report` and commit the documents it rewrites"
    assert report.main(["--check", "--root", str(REPO)]) == 0, stale




def write_run(folder: Path, predictions: pd.DataFrame, seed: int, learning_rate: float = 3e-4, val_auc: float = 0.7
              ) -> None:
    """A run folder as training.finetune writes it (the fields the report reads)."""
    folder.mkdir(parents=True)
    predictions.to_csv(folder / "predictions.csv", index=False)
    config = {"seed": seed, "bootstrap_samples": 100, "ece_bins": 10, "backbone": "tf_efficientnet_lite0",
              "image_size": 224, "init": "imagenet", "learning_rate": learning_rate, "num_epochs": 15, "max_steps": -1}
    folds = [{"fold": int(k), "val_auc": val_auc} for k in sorted(predictions["fold"].unique())]
    (folder / "results.json").write_text(json.dumps({"config": config, "folds": folds}))
    (folder / "manifest.json").write_text(json.dumps({"command": "python -m training.finetune ...", "commit": "abc1234",
                                                      "machine": "one GPU", "wall_time_s": 100.0 + seed}))


def write_label_efficiency(folder: Path, strength: float) -> None:
    """label_efficiency_predictions.csv: 2 sizes x 3 draws on folds 1-2."""
    folder.mkdir(parents=True)
    frames = []
    for size in (50, 100):
        for draw in range(3):
            rows = synthetic_predictions(100 * size + draw, strength * size / 100, folds=(1, 2))
            frames.append(rows.assign(num_labels=size, draw=draw))
    pd.concat(frames).to_csv(folder / "label_efficiency_predictions.csv", index=False)


@pytest.fixture
def synthetic_root(tmp_path) -> Path:
    """A repository root with new-layout runs, a spec with every table kind and a document with their markers."""
    results = tmp_path / "experiments"
    for seed in (1, 2, 3):  # arm A: one folder per seed
        write_run(results / f"new/arm_a/seed{seed}", synthetic_predictions(seed, 0.5), seed)
    both = pd.concat([synthetic_predictions(seed, 0.3).assign(seed=seed) for seed in (1, 2)])
    write_run(results / "new/arm_b", both, 1, learning_rate=1e-3, val_auc=0.75)  # two seeds in one file; worse on
    # the test folds but better on validation, so the choice table must pick it
    for part, folds in enumerate(((1, 2, 3), (4, 5))):  # arm C: folds split over two processes
        write_run(results / f"new/arm_c/part{part}", synthetic_predictions(7, 0.3, folds), 7)
    stopped = results / "new/arm_d"  # stopped by a deadline after folds 1-2: no results.json, no predictions.csv
    write_run(stopped, synthetic_predictions(9, 0.3, (1, 2)), 9)
    (stopped / "predictions.csv").rename(stopped / "predictions_done.csv")
    results_json = json.loads((stopped / "results.json").read_text())
    (stopped / "folds_done.json").write_text(json.dumps(results_json["folds"]))
    (stopped / "config.yaml").write_text(yaml.safe_dump(results_json["config"]))
    (stopped / "results.json").unlink()
    write_label_efficiency(results / "new/le_imagenet", 0.6)
    write_label_efficiency(results / "new/le_random", 0.2)
    runs_a = [f"new/arm_a/seed{seed}" for seed in (1, 2, 3)]
    spec = {
        "arms": {"a": {"label": "arm A", "runs": runs_a}, "b": {"label": "arm B", "runs": ["new/arm_b"]},
                 "c": {"label": "arm C", "runs": ["new/arm_c"]}, "d": {"label": "arm D", "runs": ["new/arm_d"]}},
        "tables": {
            "metrics": {"document": "doc.md", "kind": "metrics", "arms": ["a", "c", "d"]},
            "folds": {"document": "doc.md", "kind": "fold_auc", "arms": ["a", "c"]},
            "paired": {"document": "doc.md", "kind": "paired", "reference": "b", "arms": ["a", "c", "d"]},
            "arms": {"document": "doc.md", "kind": "arms", "reference": "b", "arms": ["b", "a", "c"],
                     "ensemble": True},
            "choice": {"document": "doc.md", "kind": "choice", "arms": ["a", "b"]},
            "le": {"document": "doc.md", "kind": "label_efficiency", "reference": "random",
                   "arms": {"imagenet": {"label": "ImageNet init", "run": "new/le_imagenet"},
                            "random": {"label": "random init", "run": "new/le_random"}}},
        },
    }
    (tmp_path / "experiments/report.yaml").write_text(yaml.safe_dump(spec))
    blocks = "".join(f"Text about {name}.\n<!-- report:{name} -->\nstale\n<!-- /report -->\n"
                     for name in spec["tables"])
    (tmp_path / "doc.md").write_text("# A document\n\n" + blocks + "Closing prose.\n")
    return tmp_path


def table_rows(text: str, name: str) -> list[list[str]]:
    """Cells of the data rows of table `name` in a rendered document."""
    body = text.split(f"<!-- report:{name} -->\n")[1].split("<!-- /report -->")[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in body.splitlines()[2:]]


def test_report_writes_then_checks_clean(synthetic_root) -> None:
    arguments = ["--root", str(synthetic_root)]
    assert report.main(["--check", *arguments]) == 1  # the document holds "stale"
    assert report.main(arguments) == 0
    assert report.main(["--check", *arguments]) == 0
    text = (synthetic_root / "doc.md").read_text()
    assert text.startswith("# A document\n\nText about metrics.\n") and text.endswith("Closing prose.\n")
    assert "stale" not in text
    (synthetic_root / "doc.md").write_text(text.replace("arm A", "arm A (edited by hand)", 1))
    assert report.main(["--check", *arguments]) == 1


def test_report_numbers_come_from_the_predictions(synthetic_root) -> None:
    report.main(["--root", str(synthetic_root)])
    text = (synthetic_root / "doc.md").read_text()
    results = synthetic_root / "experiments/new"
    seeds_a = [pd.read_csv(results / f"arm_a/seed{seed}/predictions.csv").sort_values("image_id") for seed in (1, 2, 3)]
    both = pd.read_csv(results / "arm_b/predictions.csv")
    seeds_b = [both[both["seed"] == seed].sort_values("image_id") for seed in (1, 2)]
    labels, patients = seeds_a[0]["label"].to_numpy(), seeds_a[0]["patient_id"].astype(str).to_numpy()
    expected = evaluation.paired_auc_difference(labels, np.stack([f["prob_malignant"] for f in seeds_a]),
                                                np.stack([f["prob_malignant"] for f in seeds_b]), patients,
                                                report.COMPARISON_BOOTSTRAP, report.COMPARISON_SEED)
    row_a = table_rows(text, "arms")[1]
    assert row_a[0] == "arm A" and row_a[2] == "3"
    assert row_a[6] == report.interval(expected["difference"], expected["ci_low"], expected["ci_high"], signed=True)
    assert row_a[7] == "higher"  # A ranks labels better by construction
    aucs = [evaluation.auc(labels, f["prob_malignant"].to_numpy()) for f in seeds_a]
    assert row_a[3] == f"{np.mean(aucs):.3f} ± {np.std(aucs, ddof=1):.3f}"
    assert table_rows(text, "arms")[0][6] == "reference"
    ensemble = np.mean([f["prob_malignant"].to_numpy() for f in seeds_a], axis=0)  # the 3 seeds' mean score, (n,)
    assert row_a[8].startswith(f"{evaluation.auc(labels, ensemble):.3f} [")
    gain = evaluation.paired_auc_difference(labels, ensemble[None], np.stack([f["prob_malignant"] for f in seeds_a]),
                                            patients, report.COMPARISON_BOOTSTRAP, report.COMPARISON_SEED)
    assert row_a[9] == report.interval(gain["difference"], gain["ci_low"], gain["ci_high"], signed=True)
    assert table_rows(text, "arms")[2][8:] == ["", ""]  # arm C: one seed, no ensemble
    metrics = table_rows(text, "metrics")
    assert [row[0] for row in metrics] == ["arm A (seed 1)", "arm A (seed 2)", "arm A (seed 3)", "arm C", "arm D"]
    assert metrics[3][1] == "1,2,3,4,5" and metrics[4][1] == "1,2 (stopped)"  # parts pooled; a stopped run
    paired_d = table_rows(text, "paired")[2]
    assert paired_d[:3] == ["arm D", "arm B", str(2 * IMAGES_PER_PATIENT * N_PATIENTS // FOLDS)]  # its folds only
    choice = table_rows(text, "choice")
    assert choice[1] == ["arm B", choice[1][1], "**chosen**"]  # the higher mean validation AUC, not the test AUC
    label_efficiency = table_rows(text, "le")
    assert [(row[0], row[1], row[2], row[3]) for row in label_efficiency] == [
        ("ImageNet init", "50", "3", "1,2"), ("ImageNet init", "100", "3", "1,2"),
        ("random init", "50", "3", "1,2"), ("random init", "100", "3", "1,2")]
    assert label_efficiency[1][7] == "higher" and label_efficiency[2][6] == ""


def test_label_efficiency_pools_part_folders(synthetic_root) -> None:
    """A label-efficiency run split by test fold over part*/ folders gives the table of the run in one folder."""
    report.main(["--root", str(synthetic_root)])
    whole = table_rows((synthetic_root / "doc.md").read_text(), "le")
    folder = synthetic_root / "experiments/new/le_imagenet"
    rows = pd.read_csv(folder / "label_efficiency_predictions.csv")
    (folder / "label_efficiency_predictions.csv").unlink()
    for fold, part in rows.groupby("fold"):
        (folder / f"part{fold}").mkdir()
        part.to_csv(folder / f"part{fold}/label_efficiency_predictions.csv", index=False)
    report.main(["--root", str(synthetic_root)])
    assert table_rows((synthetic_root / "doc.md").read_text(), "le") == whole
    rows[rows["fold"] == 1].to_csv(folder / "part2/label_efficiency_predictions.csv", index=False)
    with pytest.raises(ValueError, match="scored twice in one draw"):
        report.main(["--root", str(synthetic_root)])


def test_report_refuses_unpaired_markers(synthetic_root) -> None:
    document = synthetic_root / "doc.md"
    document.write_text(document.read_text() + "<!-- report:unknown -->\n<!-- /report -->\n")
    with pytest.raises(ValueError, match="'unknown' has no table in the spec"):
        report.main(["--root", str(synthetic_root)])
    document.write_text("no markers\n")
    with pytest.raises(ValueError, match="no marker for tables"):
        report.main(["--root", str(synthetic_root)])


def test_report_needs_the_predictions(synthetic_root) -> None:
    (synthetic_root / "experiments/new/arm_b/predictions.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"no predictions\.csv"):
        report.main(["--root", str(synthetic_root)])


def test_recipe_names_the_lesion_mask_loss_and_crops_only_when_used() -> None:
    from types import SimpleNamespace

    config = {"backbone": "tf_efficientnet_lite0", "image_size": 192, "init": "imagenet", "learning_rate": 1e-3,
              "num_epochs": 15, "max_steps": -1}
    arm = SimpleNamespace(runs=[SimpleNamespace(results=[{"config": config}])])
    assert report.recipe(arm) == "tf_efficientnet_lite0 192 px, imagenet, lr 1e-3, 15 epochs"
    config["mask_loss_weight"] = 0.5
    assert report.recipe(arm) == "tf_efficientnet_lite0 192 px, imagenet, lr 1e-3, 15 epochs, mask loss 0.5"
    config.update(mask_loss_weight=0.0, lesion_crop=True, crop_margin=0.2, image_size=128)
    assert report.recipe(arm) == "tf_efficientnet_lite0 128 px, imagenet, lr 1e-3, 15 epochs, lesion crops (margin 0.2)"


ENSEMBLE_FOLDERS = {"a1": "ens/a/seed1", "a2": "ens/a/seed2", "c": "ens/c"}


@pytest.fixture
def ensemble_root(tmp_path) -> tuple[Path, dict]:
    """(root, spec): runs A (seeds 1, 2) and C with inner-validation predictions, and an ensembles table."""
    results = tmp_path / "experiments"
    strengths = {"a1": (0.1, 0.3), "a2": (0.15, 0.25), "c": (0.3, 0.1)}  # (validation, test): c validates best
    for index, (name, (val, test)) in enumerate(strengths.items()):
        folder = results / ENSEMBLE_FOLDERS[name]
        write_run(folder, synthetic_predictions(index, test), seed=1 + (name == "a2"))
        synthetic_predictions(10 + index, val).to_csv(folder / "val_predictions.csv", index=False)
    candidates = {"one": {"label": "A, one seed", "ensembles": [["a:1"], ["a:2"]]},
                  "pair": {"label": "A + C", "ensembles": [["a:1", "c"], ["a:2", "c"]]},
                  "c": {"label": "C", "ensembles": [["c"]]},
                  "all": {"label": "A + A + C", "ensembles": [["a:1", "a:2", "c"]], "eligible": False}}
    arms = {"a": {"label": "A", "runs": [ENSEMBLE_FOLDERS["a1"], ENSEMBLE_FOLDERS["a2"]]},
            "c": {"label": "C", "runs": [ENSEMBLE_FOLDERS["c"]]}}
    table = {"document": "doc.md", "kind": "ensembles", "reference": "one", "candidates": candidates}
    spec = {"arms": arms, "tables": {"ens": table}}
    (tmp_path / "experiments/report.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (tmp_path / "doc.md").write_text("<!-- report:ens -->\n<!-- /report -->\n")
    return tmp_path, spec


def loop_ece(labels: np.ndarray, scores: np.ndarray, n_bins: int = 10) -> float:
    """Reference ECE, one bin at a time: sum over equal-width bins of |sum(y - s)| / n (1.0 in the last bin)."""
    total = 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        inside = (scores >= low) & ((scores < high) | (b == n_bins - 1))
        total += abs(np.sum(labels[inside] - scores[inside]))
    return total / len(labels)


def test_ensembles_are_chosen_on_validation_and_scored_on_test(ensemble_root) -> None:
    """Candidates (ensembles of runs, mean score) ranked by the mean over folds of their inner-validation AUC; the
    test columns computed from the members' mean test score, paired against the reference candidate."""
    tmp_path, spec = ensemble_root
    results, folders = tmp_path / "experiments", ENSEMBLE_FOLDERS
    candidates = spec["tables"]["ens"]["candidates"]
    assert report.main(["--root", str(tmp_path)]) == 0
    rows = table_rows((tmp_path / "doc.md").read_text(), "ens")

    def read(name: str, file: str) -> pd.DataFrame:
        return pd.read_csv(results / folders[name] / file).sort_values(["fold", "image_id"]).reset_index(drop=True)

    def mean_fold_auc(frames: list[pd.DataFrame]) -> float:
        score = np.mean([frame["prob_malignant"] for frame in frames], axis=0)  # (M, n) -> (n,)
        folds = frames[0]["fold"].to_numpy()
        return np.mean([evaluation.auc(frames[0]["label"][folds == k], score[folds == k]) for k in np.unique(folds)])

    validation = {"one": np.mean([mean_fold_auc([read("a1", "val_predictions.csv")]),
                                  mean_fold_auc([read("a2", "val_predictions.csv")])]),
                  "pair": np.mean([mean_fold_auc([read(a, "val_predictions.csv"), read("c", "val_predictions.csv")])
                                   for a in ("a1", "a2")]),
                  "c": mean_fold_auc([read("c", "val_predictions.csv")])}
    assert [row[3] for row in rows[:3]] == [f"{validation[name]:.3f}" for name in validation]
    chosen = max(validation, key=validation.get)  # "all" is not eligible, whatever its validation AUC
    assert [row[4] for row in rows] == [*("**chosen**" if name == chosen else "" for name in validation),
                                        "not a candidate"]
    tests = {name: read(name, "predictions.csv").sort_values("image_id") for name in folders}
    labels, patients = tests["a1"]["label"].to_numpy(), tests["a1"]["patient_id"].astype(str).to_numpy()
    pair = np.stack([(tests[a]["prob_malignant"].to_numpy() + tests["c"]["prob_malignant"].to_numpy()) / 2
                     for a in ("a1", "a2")])  # (2, n): one ensemble per seed of A
    one = np.stack([tests[a]["prob_malignant"].to_numpy() for a in ("a1", "a2")])  # (2, n)
    summary = evaluation.mean_auc_ci(labels, pair, patients, report.COMPARISON_BOOTSTRAP, report.COMPARISON_SEED)
    difference = evaluation.paired_auc_difference(labels, pair, one, patients, report.COMPARISON_BOOTSTRAP,
                                                  report.COMPARISON_SEED)
    assert rows[1][:3] == ["A + C", "2", "2"] and rows[0][8] == "reference"
    assert rows[1][5] == report.interval(summary["value"], summary["ci_low"], summary["ci_high"])
    calls = [(pair[k] >= 0.5)[labels == 1].mean() for k in range(2)], [(pair[k] < 0.5)[labels == 0].mean()
                                                                       for k in range(2)]
    assert rows[1][6] == f"{np.mean(calls[0]):.3f} / {np.mean(calls[1]):.3f}"  # every member's threshold is 0.5
    assert rows[1][7] == f"{np.mean([loop_ece(labels, pair[k]) for k in range(2)]):.3f}"
    assert rows[1][8] == report.interval(difference["difference"], difference["ci_low"], difference["ci_high"],
                                         signed=True)
    candidates["pair"]["ensembles"] = [["a", "c"]]
    (tmp_path / "experiments/report.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(ValueError, match=r"member 'a': arm 'a' has seeds \[1, 2\]; name one as ARM:SEED"):
        report.main(["--root", str(tmp_path)])
    candidates["pair"]["ensembles"] = [["a:1", "c"]]
    (tmp_path / "experiments/report.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (results / "ens/c/val_predictions.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"ens/c: no val_predictions\.csv"):
        report.main(["--root", str(tmp_path)])


def test_record_two_view_writes_the_choice_only_when_the_table_makes_it(ensemble_root) -> None:
    from experiments import record_two_view

    tmp_path, _ = ensemble_root
    whole, crop = tmp_path / "whole.json", tmp_path / "crop.json"
    for path in (whole, crop):
        path.write_text(json.dumps({"choices": [{"choice": record_two_view.CHOICE, "old": True}]}))
    arguments = ["--table", "ens", "--root", str(tmp_path), "--whole", str(whole), "--crop", str(crop)]
    rows = record_two_view.comparison(report.DEFAULT_SPEC, "ens", tmp_path)[1]
    chosen = next(row["name"] for row in rows if row["choice"] == "**chosen**")
    other = next(name for name in ("one", "pair", "c") if name != chosen)
    with pytest.raises(SystemExit, match=f"chose '{chosen}' on validation, not '{other}'"):
        record_two_view.main([*arguments, "--chosen", other])
    assert "two_view" not in json.loads(whole.read_text())
    record_two_view.main([*arguments, "--chosen", chosen])
    for path, view, partner in ((whole, "whole image", record_two_view.CROP_MODEL),
                                (crop, "lesion crop", record_two_view.WHOLE_MODEL)):
        results = json.loads(path.read_text())
        assert [choice.get("old") for choice in results["choices"]] == [None]  # the earlier entry replaced
        assert results["choices"][0]["candidates"] == {row["candidate"]: float(row["validation"]) for row in rows
                                                       if row["choice"] != "not a candidate"}
        assert results["two_view"]["view"] == view and results["two_view"]["partner"] == partner
        assert [row["test"] for row in results["two_view"]["rows"]] == [row["test"] for row in rows]


def test_calibration_table_and_recalibrated_candidates(tmp_path) -> None:
    """A `calibration` table picks the method with the lower cross-fitted validation NLL over its arms and reports the
    test ECE of each method; an ensembles candidate with `calibration` scores its members recalibrated that way."""
    from experiments import ensembles
    from tests.helpers.predictions import predictions

    results = tmp_path / "experiments"
    for seed in (1, 2):
        folder = results / f"cal/seed{seed}"
        write_run(folder, predictions(10 + seed), seed=seed)
        predictions(20 + seed).to_csv(folder / "val_predictions.csv", index=False)
    arms = {"a": {"label": "A", "runs": ["cal/seed1", "cal/seed2"]}}
    candidates = {"as_run": {"label": "A as run", "ensembles": [["a:1"]], "eligible": False},
                  "refit": {"label": "A refit", "ensembles": [["a:1"]], "calibration": "temperature_and_bias"}}
    tables = {"cal": {"document": "doc.md", "kind": "calibration", "arms": ["a"]},
              "ens": {"document": "doc.md", "kind": "ensembles", "reference": "as_run", "candidates": candidates}}
    (tmp_path / "experiments/report.yaml").write_text(yaml.safe_dump({"arms": arms, "tables": tables}))
    (tmp_path / "doc.md").write_text("<!-- report:cal -->\n<!-- /report -->\n<!-- report:ens -->\n<!-- /report -->\n")
    assert report.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "doc.md").read_text()
    rows = table_rows(text, "cal")
    validations = [pd.read_csv(results / f"cal/seed{seed}/val_predictions.csv", dtype={"patient_id": str})
                   for seed in (1, 2)]
    tests = [pd.read_csv(results / f"cal/seed{seed}/predictions.csv", dtype={"patient_id": str}) for seed in (1, 2)]
    for row, method in zip(rows, ensembles.CALIBRATIONS):
        crossfit = [ensembles.crossfit_calibration(rows_, method) for rows_ in validations]
        test_ece = [evaluation.binary_metrics(test_["label"], test_["prob_malignant"])["ece"]
                    for test_ in (ensembles.recalibrate(v, t, method)[1] for v, t in zip(validations, tests))]
        assert row[2] == method.replace("_", " ")
        assert row[3:6] == [f"{np.mean([fit['nll'] for fit in crossfit]):.3f}",
                            f"{np.mean([fit['ece'] for fit in crossfit]):.3f}", f"{np.mean(test_ece):.3f}"]
    assert [row[6] for row in rows] == ["", "**chosen**"]  # the shifted scores need the bias
    refit = ensembles.recalibrate(validations[0], tests[0], "temperature_and_bias")[1].sort_values("image_id")
    ensemble_rows = table_rows(text, "ens")
    assert ensemble_rows[1][5].startswith(f"{evaluation.auc(refit['label'], refit['prob_malignant']):.3f} [")
    assert ensemble_rows[1][7] == f"{evaluation.binary_metrics(refit['label'], refit['prob_malignant'])['ece']:.3f}"
