"""No absolute path of a development machine in the tracked code, tests, configs or docs.

Paths are relative to the repository (`stores/`, `runs/`) or to `../shared`, or come from an option or an
environment variable. Records of past runs keep the commands as they were run: `experiments/*/results/` (logs,
results files) and, in an exported model folder, `results.json` and the card rendered from it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT

DEVELOPMENT_ROOT = "/" + "work" + "/"  # the development machine's work root (spelt apart so this file passes)
MODEL_RECORDS = ("README.md", "results.json")


def tracked_text_files() -> list[Path]:
    """Files git tracks in this checkout, without the run records."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    paths = [name for name in listed.decode().split("\0") if name]
    kept = []
    for name in paths:
        parts = Path(name).parts
        run_record = parts[0] == "experiments" and "results" in parts[1:3]
        if run_record or (parts[0] == "models" and parts[-1] in MODEL_RECORDS):
            continue
        kept.append(REPO_ROOT / name)
    return kept


def roots_to_find() -> list[str]:
    """The development machine's work root, and the folder this checkout sits in, unless that is a top-level folder
    such as the system's temporary folder (a clone made with `mktemp -d`), which is no development root."""
    roots = [DEVELOPMENT_ROOT]
    parent = REPO_ROOT.parent
    if len(parent.parts) > 2:
        roots.append(str(parent).rstrip("/") + "/")
    return roots


@pytest.mark.skipif(shutil.which("git") is None or not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_no_development_machine_paths() -> None:
    roots = roots_to_find()
    offenders = []
    for path in tracked_text_files():
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # binary: images, weights, clips
        offenders += [f"{path.relative_to(REPO_ROOT)}: {root}" for root in roots if root in text]
    assert not offenders, "absolute machine paths in tracked files:\n" + "\n".join(offenders)
