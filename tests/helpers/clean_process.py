"""Run Python code in a fresh process where `usvcl_hf` cannot be imported (as for a Hub user)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCK_PACKAGE = """
import sys
sys.path = [p for p in sys.path if p not in ("", ".")]
sys.modules["usvcl_hf"] = None  # any `import usvcl_hf` now raises ImportError
try:
    import usvcl_hf  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("usvcl_hf is importable: the clean process is not clean")
"""
RESULT_MARKER = "USVCL_RESULT="
TIMEOUT_S = 300


def run_isolated(code: str, cwd: Path, timeout: float = TIMEOUT_S) -> dict:
    """Run `code` offline in a new interpreter without `usvcl_hf`; `code` sets a JSON-able `result`.

    Returns that `result`; raises `AssertionError` with the process output when it fails.
    """
    script = BLOCK_PACKAGE + textwrap.dedent(code) + f"\nimport json\nprint({RESULT_MARKER!r} + json.dumps(result))\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if completed.returncode != 0:
        raise AssertionError(f"isolated process failed:\n{completed.stdout}\n{completed.stderr}")
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    assert lines, f"isolated process printed no result:\n{completed.stdout}\n{completed.stderr}"
    return json.loads(lines[-1][len(RESULT_MARKER) :])
