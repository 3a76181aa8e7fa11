"""Issue #18's shape rules, checked: no function in usvcl_hf/, training/, demo/, experiments/, benchmarks/ or app.py
over 60 lines, no file over 500; experiment scripts that parse."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT

REPO = REPO_ROOT
NOT_YET_SPLIT = {REPO / "experiments/report/"}  # 708 lines, being split by concern (issue 41): the one exception
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 500
CHECKED = sorted([*REPO.glob("usvcl_hf/**/*.py"), *REPO.glob("training/**/*.py"), *REPO.glob("demo/**/*.py"),
                  *REPO.glob("experiments/**/*.py"), *REPO.glob("benchmarks/**/*.py"), REPO / "app.py"])
CHECKED = [path for path in CHECKED if path not in NOT_YET_SPLIT]


@pytest.mark.parametrize("path", CHECKED, ids=lambda path: str(path.relative_to(REPO)))
def test_short_functions_and_files(path: Path) -> None:
    text = path.read_text()
    assert text.count("\n") <= MAX_FILE_LINES, f"{path.name}: {text.count(chr(10))} lines"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: {long}"


SCRIPTS = sorted(REPO.glob("experiments/**/*.sh"))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: str(path.relative_to(REPO)))
def test_experiment_scripts_parse(path: Path) -> None:
    """Every experiment script is valid bash (`bash -n`), and one that calls a helper of experiments/common.sh
    sources it."""
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{path.name}: {result.stderr}"
    if path == REPO / "experiments/common.sh":
        return  # the helpers themselves, calling each other
    text = path.read_text()
    helpers = re.findall(r"^(\w+)\(\) \{", (REPO / "experiments/common.sh").read_text(), flags=re.MULTILINE)
    called = [name for name in helpers if re.search(rf"^\s*{name} ", text, flags=re.MULTILINE)]
    sourced = re.search(r"^source .*common\.sh", text, flags=re.MULTILINE)
    assert not called or sourced, f"{path.name} calls {called} without sourcing common.sh"
