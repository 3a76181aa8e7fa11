"""README.md reads in five minutes and its Python examples run as written, from the repository root, offline.

Each ```python block runs in a fresh process (the repository root as working directory, no network) and prints one
answer per line: "<label> P(malignant) <p>, threshold <t>", whose label agrees with its own numbers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
MAX_LINES = 150
ANSWER = re.compile(r"^(benign|malignant) P\(malignant\) (\d\.\d\d), threshold (\d\.\d\d)$")
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
TIMEOUT_S = 600


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_readme_is_short_and_links_exist() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_LINES
    for target in re.findall(r"\]\(((?:docs|experiments|examples)/[^)#]+|CHANGELOG\.md)\)", text):
        assert (REPO_ROOT / target).exists(), f"README links to {target}, which does not exist"
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (REPO_ROOT / image).is_file(), f"README shows {image}, which does not exist"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs_as_written(index: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, "-c", python_blocks()[index]], cwd=REPO_ROOT, env=env,
                               capture_output=True, text=True, timeout=TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-3000:]
    answers = [ANSWER.match(line) for line in completed.stdout.splitlines()]
    assert answers and all(answers), completed.stdout
    for answer in answers:
        label, probability, threshold = answer.group(1), float(answer.group(2)), float(answer.group(3))
        assert (label == "malignant") == (probability >= threshold) or abs(probability - threshold) < 0.01
