"""What every export module shares: the error type, JSON reading and the folder's file names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "model.safetensors"

CHECK_FILE = "export_check.json"

RESULTS_COPY = "results.json"

BYTES_PER_MB = 1024 * 1024

PAPER_ARXIV = "2408.10600"


class ExportError(RuntimeError):
    """An export that cannot go on; the message says what is wrong and what to do."""


def read_json(path: Path, expected: type = dict) -> Any:
    """Read a JSON object (or `expected`, e.g. `list`), or raise an `ExportError` naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ExportError(f"Cannot read {path}: {error}") from error
    if not isinstance(data, expected):
        raise ExportError(f"{path} must hold a JSON {'object' if expected is dict else expected.__name__}.")
    return data


__all__ = ["ExportError", "read_json"]
