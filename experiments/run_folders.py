"""Run folders as the experiment reports read them: one folder, or its part*/ folders (folds split over lanes)."""

from __future__ import annotations

from pathlib import Path


def run_parts(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """The folder itself when it holds one of the files `names`, else its part*/ folders that do (folds split over
    processes)."""
    def holds(path: Path) -> bool:
        return any((path / name).is_file() for name in names)

    if holds(folder):
        return [folder]
    parts = sorted(path for path in folder.glob("part*") if holds(path))
    if not parts:
        raise FileNotFoundError(f"{folder}: no {names[0]}, neither here nor in part*/ folders")
    return parts
