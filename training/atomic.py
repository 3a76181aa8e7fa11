"""Atomic writes: everything on disk is written to a temporary name next to its target, then renamed into place.

A killed process leaves the old file or folder (or none), never a half-written one. One implementation for
training state (`write_json_atomic`), exported model folders and frame stores (`atomic_folder`), single files
(`atomic_path`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMP_MARK = ".tmp-"
OLD_MARK = ".old-"


def temporary_sibling(path: Path, mark: str = TEMP_MARK) -> Path:
    """A hidden name next to `path` (same file system, so `os.replace` is atomic), unique to this process."""
    return path.parent / f".{path.name}{mark}{os.getpid()}"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` (utf-8) to `path` via a temporary file and a rename."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write `payload` as indented JSON to `path` via a temporary file and a rename."""
    write_text_atomic(path, json.dumps(payload, indent=2))


def replace_folder(staging: Path, output: Path) -> None:
    """Move `staging` to `output`, replacing an existing folder; the old one comes back if the move fails."""
    backup = temporary_sibling(output, OLD_MARK)
    shutil.rmtree(backup, ignore_errors=True)
    if output.exists():
        os.replace(output, backup)
    try:
        os.replace(staging, output)
    except OSError:
        if backup.exists():
            os.replace(backup, output)
        raise
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(output: str | Path) -> Iterator[Path]:
    """Yield a fresh empty folder next to `output`; on success it replaces `output`, on error it is removed."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_sibling(output)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        replace_folder(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["atomic_folder", "atomic_path", "replace_folder", "write_json_atomic", "write_text_atomic"]
