"""The one check every `python -m training.<x>` runs on its input paths: a missing file or folder ends the command
with one line naming the option and the path, and exit status 2 (argparse's status for a bad command line)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NoReturn

MISSING_INPUT_STATUS = 2


def missing_input(prog: str, option: str, path: str | Path, what: str = "file or folder") -> NoReturn:
    """Print `PROG: error: OPTION PATH: no such WHAT` on stderr and exit with status 2."""
    print(f"{prog}: error: {option} {path}: no such {what}", file=sys.stderr)
    raise SystemExit(MISSING_INPUT_STATUS)


def as_paths(value: object) -> list[Path]:
    """The paths a parsed option holds: none, one (str or Path) or several (a list)."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, Path)):
        return [Path(value)]
    if isinstance(value, Iterable):
        return [Path(item) for item in value if item not in (None, "")]
    raise TypeError(f"not a path or list of paths: {value!r}")


def require_inputs(prog: str, inputs: Mapping[str, object]) -> None:
    """Exit with one line (status 2) at the first `{option: path or paths}` entry that does not exist."""
    for option, value in inputs.items():
        for path in as_paths(value):
            if not path.exists():
                missing_input(prog, option, path)


def require_folder(prog: str, option: str, path: Path, what: str = "folder") -> None:
    """Exit with one line (status 2) when `path` is not an existing folder."""
    if not Path(path).is_dir():
        missing_input(prog, option, path, what)


__all__ = ["MISSING_INPUT_STATUS", "missing_input", "require_folder", "require_inputs"]
