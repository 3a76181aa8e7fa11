"""Run folders as the experiment reports read them: one folder, or its fold folders (folds split over processes)."""

from __future__ import annotations

import re
from pathlib import Path

FOLD_FOLDERS = ("fold*", "part*")  # `folds1-3/`, `fold4/` as committed; `part*/` as a split run may name them


def first_number(path: Path) -> tuple[int, str]:
    """Sort key of a fold folder: the first number in its name (`folds2-3` -> 2), then the name."""
    match = re.search(r"\d+", path.name)
    return (int(match.group()) if match else -1, path.name)


def run_parts(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """The folder itself when it holds one of the files `names`, else its fold folders that do (`folds1-3/`,
    `fold4/` or `part*/`: folds split over processes), in the order of their first fold."""
    def holds(path: Path) -> bool:
        return any((path / name).is_file() for name in names)

    if holds(folder):
        return [folder]
    parts = sorted({path for pattern in FOLD_FOLDERS for path in folder.glob(pattern) if holds(path)},
                   key=first_number)
    if not parts:
        raise FileNotFoundError(f"{folder}: no {names[0]}, neither here nor in fold folders (folds1-3/, part1/ ...)")
    return parts
