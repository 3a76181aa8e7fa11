"""Publish an exported usvcl folder (see `training/export.py`) to the Hugging Face Hub, and optionally the demo Space.

The exact folder that goes up is built in a staging folder, then validated: it is loaded back with
`AutoModelForImageClassification` / `AutoImageProcessor` / `pipeline` (or `AutoModel` and plain timm for a backbone)
in a separate Python process whose `sys.path` cannot import `usvcl_hf` and which runs with `HF_HUB_OFFLINE=1`;
the outputs must equal the ones in the folder's `export_check.json`; the card must parse with
`huggingface_hub.ModelCard` and carry licence, library, pipeline tag (and model-index for a classifier).
Only then is it uploaded (`HfApi().create_repo` + `upload_folder`, token from `huggingface_hub.get_token()`).

    python -m training.publish --model-dir models/usvcl-lite0-busbra --repo-id ORG/usvcl-lite0-busbra
    python -m training.publish --model-dir models/usvcl-lite0-busbra --repo-id ORG/NAME \
        --space-id ORG/usvcl-demo --dry-run runs/publish
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, ModelCard, SpaceCard, SpaceCardData, get_token

from training.atomic import atomic_folder
from training.cli_inputs import require_inputs
from training.export.base import ExportError
from training.export.retarget import companion_ids, retarget_folder
from training.logs import setup_logging

LOGGER = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_FILE_PATTERNS = ("README.md", "config.json", "preprocessor_config.json", "export_check.json", "results.json",
                       "ood_results.json", "*.safetensors", "*.py", "*.png")
SPACE_APP_FILE = "app.py"
SPACE_PACKAGE = "usvcl_hf"  # always shipped; app.py's other local imports (demo/) are found by local_imports
SPACE_EXAMPLES = "examples"
SPACE_MODELS_DIR = "models"
SPACE_MODEL_VARIABLE = "USVCL_MODEL"  # app.py reads the model folder from it
SPACE_COMPANION_VARIABLES = {"lesion_model": "USVCL_LESION_MODEL", "crop_model": "USVCL_CROP_MODEL"}  # and these
SPACE_DEV_PACKAGES = ("pytest", "hypothesis", "ruff", "playwright", "tensorboard", "gradio", "gradio-client")
SPACE_EMOJI = "🩻"
CLEAN_CHECK_TIMEOUT_S = 600
CHECK_MARKER = "USVCL_CHECK "
TRUE_VALUES = ("1", "on", "yes", "true")
PUBLISHED_DIR_MODE = 0o755
REQUIRED_CARD_FIELDS = ("license", "library_name", "pipeline_tag")
IGNORED_NAMES = ("__pycache__", ".DS_Store", ".ipynb_checkpoints")

# Runs in a fresh interpreter (`python -I -c`), cwd = an empty folder, `HF_HUB_OFFLINE=1`: a user's machine that has
# only torch, transformers, timm, numpy and Pillow. It raises (non-zero exit) on any mismatch.
CLEAN_CHECK_SCRIPT = r'''
import importlib.abc, json, pathlib, sys

class BlockProjectImports(importlib.abc.MetaPathFinder):
    """The project's own packages must not be importable: the folder's code has to stand alone."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("usvcl_hf", "training"):
            raise ImportError(f"{name} is blocked: the exported folder must load without the usvcl package")
        return None

sys.meta_path.insert(0, BlockProjectImports())
import numpy as np, PIL.Image, torch
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

folder = pathlib.Path(sys.argv[1])
check = json.loads((folder / "export_check.json").read_text())
config = json.loads((folder / "config.json").read_text())
atol = check["atol"]
spec = check["inputs"]
pixel_values = np.random.default_rng(spec["pixel_values"]["seed"]).standard_normal(spec["pixel_values"]["shape"])
pixel_values = torch.from_numpy(pixel_values.astype(np.float32))
image = np.random.default_rng(spec["image"]["seed"]).integers(0, 256, spec["image"]["shape"], dtype=np.uint8)
assert abs(float(pixel_values.double().sum()) - spec["pixel_values"]["sum"]) < 1e-3, "numpy's generator changed"
assert int(image.astype(np.int64).sum()) == spec["image"]["sum"], "numpy's generator changed"
report = {"kind": check["kind"], "usvcl_hf_importable": False}

def compare(name, got, recorded):
    recorded = torch.tensor(recorded, dtype=torch.float32)
    difference = float((got - recorded).abs().max())
    report[f"max_abs_diff_{name}"] = difference
    assert got.shape == recorded.shape and difference <= atol, f"{name}: differs from export_check.json by {difference}"

processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
image_pixels = processor(image, return_tensors="pt")["pixel_values"]
if check["kind"] == "classifier":
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    report["dtype"] = str(next(model.parameters()).dtype)
    assert report["dtype"] == "torch.float32", f"loads as {report['dtype']}, not float32"
    with torch.no_grad():
        compare("logits", model(pixel_values).logits, check["outputs"]["pixel_values"]["logits"])
        image_logits = model(image_pixels).logits
        compare("image_logits", image_logits, check["outputs"]["image"]["logits"])
    classifier = pipeline("image-classification", model=str(folder), trust_remote_code=True)
    predictions = classifier(PIL.Image.fromarray(image))
    report["pipeline"] = predictions
    scores = {p["label"]: p["score"] for p in predictions}
    assert set(scores) == set(config["id2label"].values()), f"pipeline labels {sorted(scores)}"
    expected = image_logits.softmax(-1)[0]
    for index, label in config["id2label"].items():
        assert abs(scores[label] - float(expected[int(index)])) < 1e-4, f"pipeline score of {label}"
elif check["kind"] == "lesion":
    from transformers import AutoModelForSemanticSegmentation
    model = AutoModelForSemanticSegmentation.from_pretrained(folder, trust_remote_code=True).eval()
    report["dtype"] = str(next(model.parameters()).dtype)
    assert report["dtype"] == "torch.float32", f"loads as {report['dtype']}, not float32"
    with torch.no_grad():
        for name, pixels in (("pixel_values", pixel_values), ("image", image_pixels)):
            output, recorded = model(pixels), check["outputs"][name]
            compare(f"{name}_lesion_probability", output.lesion_probability, recorded["lesion_probability"])
            compare(f"{name}_presence_logits", output.presence_logits, recorded["presence_logits"])
            pooled = torch.nn.functional.adaptive_avg_pool2d(output.logits, len(recorded["logits_pooled"][0][0]))
            compare(f"{name}_logits_pooled", pooled, recorded["logits_pooled"])
else:
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    report["dtype"] = str(next(model.parameters()).dtype)
    assert report["dtype"] == "torch.float32", f"loads as {report['dtype']}, not float32"
    with torch.no_grad():
        output = model(pixel_values)
        norms = output.embeddings.norm(dim=-1)
        report["embedding_norms"] = norms.tolist()
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4), "embeddings are not L2-normalised"
        compare("embeddings", output.embeddings, check["outputs"]["pixel_values"]["embeddings"])
        compare("pooler_output", output.pooler_output, check["outputs"]["pixel_values"]["pooler_output"])
        compare("image_embeddings", model(image_pixels).embeddings, check["outputs"]["image"]["embeddings"])
    timm_file = folder / "timm_backbone.safetensors"
    if timm_file.is_file():
        import timm
        plain = timm.create_model(config["backbone"], pretrained=True, in_chans=config["in_chans"], num_classes=0,
                                  pretrained_cfg_overlay=dict(file=str(timm_file))).eval()
        with torch.no_grad():
            compare("timm_features", plain(pixel_values), check["outputs"]["pixel_values"]["pooler_output"])
assert not any(name.split(".")[0] == "usvcl_hf" for name in sys.modules), "usvcl_hf was imported"
print("USVCL_CHECK " + json.dumps(report))
'''


class PublishError(RuntimeError):
    """Publishing cannot go on; the message is one paragraph saying why and what to do."""


# ------------------------------------------------------------------------------------------------------- staging


def copy_model_folder(model_dir: Path, target: Path) -> list[str]:
    """Copy the files that go up (`MODEL_FILE_PATTERNS`, top level only) into `target`; return the names left out."""
    if not (model_dir / "config.json").is_file():
        raise PublishError(f"{model_dir} is not an exported model folder (no config.json): run training.export first.")
    target.mkdir(parents=True, exist_ok=True)
    left_out = []
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and any(fnmatch.fnmatch(path.name, pattern) for pattern in MODEL_FILE_PATTERNS):
            shutil.copyfile(path, target / path.name)
        else:
            left_out.append(path.name)
    return left_out


def clean_environment(home: Path) -> dict[str, str]:
    """Environment of the validation process: offline, its own HF cache, no PYTHONPATH or token."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(home / "hf_home"),
                "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONDONTWRITEBYTECODE": "1", "TOKENIZERS_PARALLELISM": "false"})
    return env


def load_in_clean_process(folder: Path, python: str = sys.executable) -> dict[str, Any]:
    """Load `folder` in a fresh interpreter that cannot import usvcl_hf, offline; return its report.

    Raises `PublishError` with the child's error output when loading, classifying or the recorded outputs fail.
    """
    with tempfile.TemporaryDirectory(prefix="usvcl-clean-") as home:
        completed = subprocess.run(
            [python, "-I", "-c", CLEAN_CHECK_SCRIPT, str(folder.resolve())],
            cwd=home, env=clean_environment(Path(home)), capture_output=True, text=True, timeout=CLEAN_CHECK_TIMEOUT_S,
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(CHECK_MARKER)]
    if completed.returncode != 0 or not lines:
        tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-15:])
        raise PublishError(f"{folder} does not load in a clean offline Python without usvcl_hf:\n{tail}")
    return json.loads(lines[-1][len(CHECK_MARKER) :])


def check_model_card(folder: Path, kind: str) -> dict[str, Any]:
    """Parse README.md with `huggingface_hub.ModelCard`; require licence, library, pipeline tag (+ model-index)."""
    card_path = folder / "README.md"
    if not card_path.is_file():
        raise PublishError(f"{folder} has no README.md (model card): re-export it with training.export.")
    card = ModelCard.load(card_path)
    data = card.data
    missing = [field for field in REQUIRED_CARD_FIELDS if not getattr(data, field, None)]
    if kind == "classifier" and not data.eval_results:
        missing.append("model-index")
    if missing:
        raise PublishError(f"The model card {card_path} lacks {missing} in its YAML header.")
    return {"license": data.license, "library_name": data.library_name, "pipeline_tag": data.pipeline_tag,
            "eval_results": len(data.eval_results or [])}


def validate_model_folder(folder: Path) -> dict[str, Any]:
    """Every check of a folder before it goes up; returns what was found."""
    check_path = folder / "export_check.json"
    if not check_path.is_file():
        raise PublishError(f"{folder} has no export_check.json: it was not written by training.export.")
    kind = json.loads(check_path.read_text())["kind"]
    return {"card": check_model_card(folder, kind), "clean_load": load_in_clean_process(folder)}


def space_requirements(requirements: Path) -> str:
    """The repo's requirements without test tooling and gradio (the Space's `sdk_version` pins gradio)."""
    kept = []
    for line in requirements.read_text().splitlines():
        name = line.split("#")[0].strip().split("==")[0].split(">=")[0].strip().lower()
        if name and name not in SPACE_DEV_PACKAGES:
            kept.append(line.strip())
    return "\n".join(kept) + "\n"


def space_card(space_id: str, repo_id: str, license_id: str | None) -> str:
    """README.md of the Space: the Spaces YAML header (sdk: gradio, app_file: app.py) and a short text."""
    import gradio  # only needed when a Space is built

    data = SpaceCardData(
        title="usvcl breast ultrasound demo", sdk="gradio", sdk_version=gradio.__version__, app_file=SPACE_APP_FILE,
        license=license_id, models=[repo_id], tags=["medical-imaging", "ultrasound", "research-only"],
        emoji=SPACE_EMOJI, colorFrom="gray", colorTo="blue", pinned=False,
        short_description="Breast tumour benign/malignant research demo",
    )
    body = (
        f"# usvcl breast ultrasound demo\n\nClassifies breast ultrasound images and clips as benign or malignant "
        f"with [{repo_id}](https://huggingface.co/{repo_id}) (arXiv 2408.10600 reproduction).\n\n"
        "**Research use only. Not a medical device; not for diagnosis.** Uploaded files are deleted after use.\n"
    )
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def local_imports(app: Path) -> list[str]:
    """The repository's own top-level modules and packages that `app` imports (e.g. `usvcl_hf`, a `demo/` beside it)."""
    names = set()
    for node in ast.walk(ast.parse(app.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(name for name in names
                  if (app.parent / name).is_dir() or (app.parent / f"{name}.py").is_file())


def copy_local_imports(app: Path, target: Path) -> list[str]:
    """Copy the modules and packages `local_imports` finds (always the `usvcl_hf` package); return their names."""
    ignore = shutil.ignore_patterns(*IGNORED_NAMES, "*.pyc")
    names = sorted({SPACE_PACKAGE, *local_imports(app)})
    for name in names:
        if (app.parent / name).is_dir():
            shutil.copytree(app.parent / name, target / name, ignore=ignore)
        else:
            shutil.copyfile(app.parent / f"{name}.py", target / f"{name}.py")
    return names


def space_variables(model_name: str, companions: dict[str, Path]) -> dict[str, str]:
    """The Space's variables: the folder of the model and of each companion, which `python app.py` reads."""
    variables = {SPACE_MODEL_VARIABLE: f"{SPACE_MODELS_DIR}/{model_name}"}
    for role, folder in companions.items():
        variables[SPACE_COMPANION_VARIABLES[role]] = f"{SPACE_MODELS_DIR}/{folder.name}"
    return variables


def build_space(model_folder: Path, model_name: str, target: Path, space_id: str, repo_id: str,
                companions: dict[str, Path] | None = None) -> None:
    """The Space folder: app.py and the modules it imports, requirements.txt, models/<model_name>/ and a folder per
    two-view companion (the models `python app.py` loads), examples/, README.md."""
    app = REPO_ROOT / SPACE_APP_FILE
    if not app.is_file():
        raise PublishError(f"--space-id needs the Gradio app {app}, which does not exist yet.")
    target.mkdir(parents=True)
    shutil.copyfile(app, target / SPACE_APP_FILE)
    ignore = shutil.ignore_patterns(*IGNORED_NAMES, "*.pyc")
    copy_local_imports(app, target)
    shutil.copytree(model_folder, target / SPACE_MODELS_DIR / model_name, ignore=ignore)
    for folder in (companions or {}).values():
        shutil.copytree(folder, target / SPACE_MODELS_DIR / folder.name, ignore=ignore)
    if (REPO_ROOT / SPACE_EXAMPLES).is_dir():
        shutil.copytree(REPO_ROOT / SPACE_EXAMPLES, target / SPACE_EXAMPLES, ignore=ignore)
    (target / "requirements.txt").write_text(space_requirements(REPO_ROOT / "requirements.txt"))
    license_id = ModelCard.load(model_folder / "README.md").data.license
    (target / "README.md").write_text(space_card(space_id, repo_id, license_id))


def stage_companions(model_dir: Path, target: Path, repo_id: str) -> dict[str, tuple[Path, str]]:
    """Copy each two-view companion the model's config names (found beside `model_dir` by its name) into
    `target/<role>`, named for the owner of `repo_id`; return `{role: (staged folder, Hub id)}`."""
    staged = {}
    for role, hub_id in companion_ids(model_dir, repo_id).items():
        source = model_dir.parent / hub_id.rpartition("/")[2]
        if not (source / "config.json").is_file():
            raise PublishError(f"{model_dir}/config.json names the {role} {hub_id}; it is published from the folder "
                               f"beside the model, {source}: no such exported folder.")
        folder = target / role / source.name
        copy_model_folder(source, folder)
        retarget_folder(folder, hub_id)
        staged[role] = (folder, hub_id)
    return staged


def validate_space(folder: Path) -> dict[str, Any]:
    """Check the Space folder: header parses (sdk gradio, app_file present), app.py compiles, model folder there."""
    data = SpaceCard.load(folder / "README.md").data
    if data.sdk != "gradio" or not (folder / str(data.app_file)).is_file():
        raise PublishError(f"Space README header must say sdk: gradio and name an existing app_file; got {data}.")
    compile((folder / SPACE_APP_FILE).read_text(), SPACE_APP_FILE, "exec")
    models = sorted(path.name for path in (folder / SPACE_MODELS_DIR).iterdir())
    return {"sdk": data.sdk, "sdk_version": data.sdk_version, "app_file": data.app_file, "models": models}


def build_and_validate(model_dir: Path, target: Path, repo_id: str, space_id: str | None) -> dict[str, Any]:
    """Stage `target/model`, its companions (`target/<role>/<name>`) and `target/space`, every repository id derived
    from `repo_id`, and validate them; return the report."""
    model_folder = target / "model"
    left_out = copy_model_folder(model_dir, model_folder)
    try:
        companions = stage_companions(model_dir, target, repo_id)
        retarget_folder(model_folder, repo_id)
    except ExportError as error:
        raise PublishError(str(error)) from error
    report: dict[str, Any] = {
        "model": validate_model_folder(model_folder), "left_out": left_out,
        "repo_ids": {"model": repo_id, **{role: hub_id for role, (_, hub_id) in companions.items()}},
        "companions": {role: str(folder.relative_to(target)) for role, (folder, _) in companions.items()},
    }
    for role, (folder, _) in companions.items():
        report[role] = validate_model_folder(folder)
    if space_id:
        space_folder = target / "space"
        name = model_dir.resolve().name
        folders = {role: folder for role, (folder, _) in companions.items()}
        build_space(model_folder, name, space_folder, space_id, repo_id, folders)
        report["space"] = {**validate_space(space_folder), "variables": space_variables(name, folders)}
    (target / "publish_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


# -------------------------------------------------------------------------------------------------------- upload


def hub_offline() -> bool:
    """True when the Hub must not be contacted (`HF_HUB_OFFLINE` set)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_VALUES


def require_upload_access() -> str:
    """The Hub token; `PublishError` when offline or no token is found (checked before anything is built)."""
    if hub_offline():
        raise PublishError(
            "HF_HUB_OFFLINE is set, so nothing can be uploaded. Unset HF_HUB_OFFLINE on a machine that can reach "
            "huggingface.co, or use --dry-run OUT to build and validate the folder without uploading."
        )
    token = get_token()
    if not token:
        raise PublishError(
            "No Hugging Face token was found (HF_TOKEN, or `hf auth login`, which stores one). Log in with a token "
            "that can write to the repository, or use --dry-run OUT to build and validate without uploading."
        )
    return token


def upload(staged: Path, repo_id: str, space_id: str | None, private: bool, token: str, message: str) -> list[str]:
    """Create the repositories (if needed) and upload the staged folders; return their URLs."""
    api = HfApi(token=token)
    try:
        report = json.loads((staged / "publish_report.json").read_text())
        urls = []
        for role, hub_id in report["repo_ids"].items():
            folder = staged / ("model" if role == "model" else report["companions"][role])
            urls.append(str(api.create_repo(hub_id, private=private, exist_ok=True, repo_type="model")))
            api.upload_folder(repo_id=hub_id, folder_path=folder, repo_type="model", commit_message=message)
        if space_id:
            variables = [{"key": key, "value": value} for key, value in report["space"]["variables"].items()]
            space_url = api.create_repo(space_id, private=private, exist_ok=True, repo_type="space",
                                        space_sdk="gradio", space_variables=variables)
            api.upload_folder(repo_id=space_id, folder_path=staged / "space", repo_type="space",
                              commit_message=message)
            urls.append(str(space_url))
    except Exception as error:  # network, auth and Hub errors all end the same way: one clear message
        reason = str(error).splitlines()[0] if str(error) else "no details"
        raise PublishError(
            f"Uploading to the Hub failed ({type(error).__name__}: {reason}). "
            "Check the network connection, that the token may write to "
            f"{repo_id}{' and ' + space_id if space_id else ''}, and try again; nothing was kept locally."
        ) from error
    return urls


# ----------------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m training.publish",
        description="Validate an exported usvcl folder in a clean offline process and upload it to the Hub "
        "(optionally with the Gradio demo as a Space).",
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="folder written by training.export")
    parser.add_argument("--repo-id", required=True, help="Hub model repository, ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repositories as private")
    parser.add_argument("--dry-run", type=Path, metavar="OUT",
                        help="build and validate into OUT/model (and OUT/space), upload nothing")
    parser.add_argument("--space-id", help="also publish the Gradio demo as this Space, ORG/SPACE")
    parser.add_argument("--commit-message", default="Upload usvcl model", help="Hub commit message")
    return parser


def dry_run(args: argparse.Namespace) -> Path:
    """Build and validate into `args.dry_run` (written next to it, then renamed); return it."""
    output: Path = args.dry_run
    with atomic_folder(output) as staging:
        build_and_validate(args.model_dir, staging, args.repo_id, args.space_id)
        staging.chmod(PUBLISHED_DIR_MODE)
    return output


def publish(args: argparse.Namespace) -> list[str]:
    """Check access, build and validate in a temporary folder, upload; return the URLs."""
    token = require_upload_access()
    with tempfile.TemporaryDirectory(prefix="usvcl-publish-") as staging:
        build_and_validate(args.model_dir, Path(staging), args.repo_id, args.space_id)
        return upload(Path(staging), args.repo_id, args.space_id, args.private, token, args.commit_message)


def main(argv: list[str] | None = None) -> int:
    """Run the command; the last line says where the output went. Returns the exit code."""
    args = build_parser().parse_args(argv)
    require_inputs("python -m training.publish", {"--model-dir": args.model_dir})
    setup_logging()
    try:
        if args.dry_run is not None:
            output = dry_run(args)
            folders = "model/ and space/" if args.space_id else "model/"
            LOGGER.info("Dry run, nothing uploaded: the validated %s are in %s", folders, output.resolve())
            return 0
        urls = publish(args)
    except PublishError as error:
        LOGGER.error("push_to_hub failed: %s", error)
        return 1
    LOGGER.info("Uploaded to %s", ", ".join(urls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
