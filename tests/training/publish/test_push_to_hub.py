"""training/publish/push_to_hub.py: dry run builds and validates; no token / offline / failed upload exit cleanly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from huggingface_hub import SpaceCard

from tests.helpers import export_models
from tests.helpers.paths import REPO_ROOT
from training.publish import push_to_hub

REPO_ID = "test-org/usvcl-tiny"
SPACE_ID = "test-org/usvcl-demo"
CLI_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported tiny classifier."""
    return export_models.export_tiny_classifier(tmp_path_factory.mktemp("push"))


@pytest.fixture
def fake_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repo root with app.py, requirements.txt, usvcl_hf/, demo/ and examples/ for building a Space."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "app.py").write_text("import usvcl_hf\nfrom demo import summary\nprint('demo')\n")
    shutil.copyfile(REPO_ROOT / "requirements.txt", root / "requirements.txt")
    for package in ("usvcl_hf", "demo"):
        shutil.copytree(REPO_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "examples").mkdir()
    (root / "examples" / "README.md").write_text("examples\n")
    monkeypatch.setattr(push_to_hub, "REPO_ROOT", root)
    return root


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Route `tempfile` into an empty folder, to see that nothing is left behind."""
    folder = tmp_path / "tempfiles"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_dry_run_builds_and_validates_model_and_space(exported: Path, fake_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "publish"
    code = push_to_hub.main(["--model-dir", str(exported), "--repo-id", REPO_ID, "--space-id", SPACE_ID,
                             "--dry-run", str(out)])
    assert code == 0
    assert sorted(path.name for path in (out / "model").iterdir()) == sorted(path.name for path in exported.iterdir())
    report = json.loads((out / "publish_report.json").read_text())
    assert report["model"]["clean_load"]["dtype"] == "torch.float32"
    assert report["model"]["card"]["license"] == "cc-by-nc-4.0"
    space = out / "space"
    assert {"app.py", "requirements.txt", "usvcl_hf", "demo", "models", "examples", "README.md"} <= {
        path.name for path in space.iterdir()}
    assert (space / "models" / exported.name / "model.safetensors").is_file()
    requirements = (space / "requirements.txt").read_text()
    assert "torch==" in requirements and "pytest" not in requirements and "gradio" not in requirements
    header = SpaceCard.load(space / "README.md").data
    assert (header.sdk, header.app_file) == ("gradio", "app.py") and header.models == [REPO_ID]
    assert not list(tmp_path.glob(".publish*")), "a staging folder was left behind"


def test_offline_upload_exits_with_a_clear_message(
    exported: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], private_tmp: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert push_to_hub.main(["--model-dir", str(exported), "--repo-id", REPO_ID]) == 1
    message = capsys.readouterr().err
    assert "HF_HUB_OFFLINE is set" in message and "--dry-run" in message
    assert not list(private_tmp.iterdir())


def test_missing_token_exits_with_a_clear_message(exported: Path, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.update({"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "0", "PYTHONPATH": str(REPO_ROOT)})
    completed = subprocess.run(
        [sys.executable, "-m", "training.publish.push_to_hub", "--model-dir", str(exported), "--repo-id", REPO_ID],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    assert completed.returncode == 1
    assert "No Hugging Face token was found" in completed.stderr


class RecordingApi:
    """Stands in for `HfApi`: records the calls and the uploaded files; fails when told to."""

    calls: list[tuple[str, dict]] = []
    fail_with: Exception | None = None

    def __init__(self, token: str | None = None) -> None:
        self.token = token

    def create_repo(self, repo_id: str, **kwargs) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, folder_path: Path, **kwargs) -> None:
        files = sorted(str(path.relative_to(folder_path)) for path in Path(folder_path).rglob("*") if path.is_file())
        self.calls.append(("upload_folder", {"files": files, **kwargs}))


def test_upload_sends_the_validated_folders(
    exported: Path, fake_repo: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(push_to_hub, "get_token", lambda: "hf_test_token")
    monkeypatch.setattr(RecordingApi, "calls", [])
    monkeypatch.setattr(push_to_hub, "HfApi", RecordingApi)
    code = push_to_hub.main(["--model-dir", str(exported), "--repo-id", REPO_ID, "--space-id", SPACE_ID, "--private"])
    assert code == 0
    kinds = [(name, call.get("repo_id"), call.get("repo_type")) for name, call in RecordingApi.calls]
    assert kinds == [("create_repo", REPO_ID, "model"), ("upload_folder", REPO_ID, "model"),
                     ("create_repo", SPACE_ID, "space"), ("upload_folder", SPACE_ID, "space")]
    model_files = RecordingApi.calls[1][1]["files"]
    assert model_files == sorted(path.name for path in exported.iterdir())
    space_create = RecordingApi.calls[2][1]
    assert space_create["private"] and space_create["space_variables"][0]["value"] == f"models/{exported.name}"
    assert f"models/{exported.name}/model.safetensors" in RecordingApi.calls[3][1]["files"]
    assert "Uploaded to https://huggingface.co/" + REPO_ID in capsys.readouterr().err
    assert not list(private_tmp.iterdir())


def test_failed_upload_exits_cleanly(
    exported: Path, monkeypatch: pytest.MonkeyPatch, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(push_to_hub, "get_token", lambda: "hf_test_token")
    monkeypatch.setattr(RecordingApi, "fail_with", ConnectionError("Name or service not known"))
    monkeypatch.setattr(push_to_hub, "HfApi", RecordingApi)
    assert push_to_hub.main(["--model-dir", str(exported), "--repo-id", REPO_ID]) == 1
    message = capsys.readouterr().err
    assert "Uploading to the Hub failed (ConnectionError: Name or service not known)" in message
    assert not list(private_tmp.iterdir()), "the staging folder was left behind"


def test_broken_folder_is_refused(exported: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    check = json.loads((broken / "export_check.json").read_text())
    check["outputs"]["pixel_values"]["logits"][0][0] += 1.0
    (broken / "export_check.json").write_text(json.dumps(check))
    assert push_to_hub.main(["--model-dir", str(broken), "--repo-id", REPO_ID, "--dry-run", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        push_to_hub.main(["--help"])
    assert exited.value.code == 0 and "--dry-run" in capsys.readouterr().out


SPACE_LOAD_SCRIPT = r'''
import json, os, sys
import app
args = app.parse_args([])
model, processor = app.load_model(args.model)
lesion = app.load_demo_lesion_model(args.lesion_model, args.crop_model)
assert lesion is not None and lesion.crop_model is not None, "the Space would run without its lesion or crop model"
print("LOADED " + json.dumps({"model": args.model, "lesion_model": args.lesion_model, "crop_model": args.crop_model}))
'''


@pytest.mark.slow
def test_dry_run_of_the_bundled_model_builds_the_local_demo_under_the_given_owner(tmp_path: Path) -> None:
    """The Space holds the three models `python app.py` loads by default and loads them all; every repository id
    (the companions in config.json, the cards' examples) is derived from --repo-id, never the bundled `usvcl/`."""
    out = tmp_path / "publish"
    code = push_to_hub.main(["--model-dir", str(REPO_ROOT / "models" / "usvcl-lite0-busbra"), "--repo-id",
                             "someone/whole-image", "--space-id", "someone/demo", "--dry-run", str(out)])
    assert code == 0
    report = json.loads((out / "publish_report.json").read_text())
    expected = {"model": "someone/whole-image", "lesion_model": "someone/usvcl-lesion-busbra",
                "crop_model": "someone/usvcl-lite0-crops-busbra"}
    assert report["repo_ids"] == expected
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["two_view_models"] == {"lesion_model": expected["lesion_model"], "crop_model": expected["crop_model"]}
    staged = [out / "model", *(out / folder for folder in report["companions"].values())]
    for folder in staged:
        for name in ("README.md", "config.json"):
            assert "usvcl/" not in (folder / name).read_text(), f"{folder / name} names a bundled repository id"
    assert 'model="someone/whole-image"' in (out / "model" / "README.md").read_text()

    import app  # the local demo's defaults: the same three folders, byte for byte
    local = app.parse_args([])
    space = out / "space"
    variables = report["space"]["variables"]
    for local_name, variable in ((local.model, "USVCL_MODEL"), (app.DEFAULT_LESION_MODEL, "USVCL_LESION_MODEL"),
                                 (app.DEFAULT_CROP_MODEL, "USVCL_CROP_MODEL")):
        assert (space / variables[variable] / "model.safetensors").read_bytes() == (
            REPO_ROOT / local_name / "model.safetensors").read_bytes()
    requirements = (space / "requirements.txt").read_text()
    assert "torch" in requirements and "gradio" not in requirements
    env = {**os.environ, **variables, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(space),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    completed = subprocess.run([sys.executable, "-c", SPACE_LOAD_SCRIPT], cwd=space, env=env, capture_output=True,
                               text=True, timeout=CLI_TIMEOUT_S * 3)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "LOADED" in completed.stdout
