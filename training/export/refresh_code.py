"""Refresh the Hub code files of an exported model folder from `usvcl_hf`, without touching the weights.

    python -m training.export.refresh_code models/usvcl-lite0-busbra [more folders ...] [--check]

An exported folder (`training.export`) carries its own copy of the Hub files its `auto_map` names and what they
import (for a usvcl classifier: `configuration_usvcl.py`, `modeling_usvcl.py`, `losses.py`,
`image_processing_usvcl.py`) so that `trust_remote_code=True` loads it without this package. After editing one of
them in `usvcl_hf/`, this command copies them again (each file written to a temporary name and renamed into place)
and deletes the Python files the folder no longer loads (e.g. a module a config stopped importing).
`--check` only reports which copies differ or are no longer used and exits 1 if any are.
The weights, `config.json`, the card and `export_check.json` stay as they are;
`tests/training/export/test_export.py` then checks that the bundled model still gives the logits recorded at export.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from transformers.dynamic_module_utils import get_relative_import_files

import usvcl_hf
from training.atomic import atomic_path
from training.cli_inputs import require_inputs
from training.logs import setup_logging

LOGGER = logging.getLogger(__name__)
PACKAGE_DIR = Path(usvcl_hf.__file__).resolve().parent
AUTO_MAP_FILES = ("config.json", "preprocessor_config.json")


def code_files(folder: Path) -> list[str]:
    """The modules `trust_remote_code` loads for `folder`: those its `auto_map`s name (config.json,
    preprocessor_config.json) and its `custom_pipelines` implement (config.json) and, recursively, what they import
    relatively (transformers' own rule)."""
    modules = set()
    for name in AUTO_MAP_FILES:
        if (folder / name).is_file():
            config = json.loads((folder / name).read_text())
            references = [*(config.get("auto_map") or {}).values(),
                          *(task["impl"] for task in (config.get("custom_pipelines") or {}).values())]
            modules.update(f"{reference.split('.')[0]}.py" for reference in references)
    files = set()
    for module in modules:
        files.add(module)
        files.update(Path(path).name for path in get_relative_import_files(str(PACKAGE_DIR / module)))
    return sorted(files)


def stale_files(folder: Path) -> list[str]:
    """Code files of `folder` that are missing or differ from `usvcl_hf`'s."""
    return [name for name in code_files(folder)
            if not (folder / name).is_file() or (folder / name).read_bytes() != (PACKAGE_DIR / name).read_bytes()]


def unused_files(folder: Path) -> list[str]:
    """Python files of `folder` that `trust_remote_code` no longer loads (not in `code_files`)."""
    used = set(code_files(folder))
    return sorted(path.name for path in folder.glob("*.py") if path.name not in used)


def refresh_code(folder: Path) -> list[str]:
    """Copy the stale Hub files of `usvcl_hf` into `folder` (atomically, file by file) and delete the code files it no
    longer loads; return their names."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}: not an exported model folder (config.json is missing)")
    stale = stale_files(folder)
    for name in stale:
        with atomic_path(folder / name) as temporary:
            shutil.copyfile(PACKAGE_DIR / name, temporary)
        (folder / name).chmod(0o644)
    unused = unused_files(folder)
    for name in unused:
        (folder / name).unlink()
    return stale + unused


def main(argv: Sequence[str] | None = None) -> int:
    """Refresh (or `--check`) every folder given; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m training.export.refresh_code", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="exported model folders, e.g. models/*/")
    parser.add_argument("--check", action="store_true", help="only report stale copies (exit 1 if any)")
    args = parser.parse_args(argv)
    require_inputs("python -m training.export.refresh_code", {"FOLDERS": args.folders})
    setup_logging()
    stale_anywhere = False
    for folder in args.folders:
        try:
            changed = stale_files(folder) + unused_files(folder) if args.check else refresh_code(folder)
        except FileNotFoundError as error:
            LOGGER.error("%s", error)
            return 1
        stale_anywhere |= bool(changed)
        verb = "differ from usvcl_hf or are unused" if args.check else "refreshed from usvcl_hf or removed"
        LOGGER.info("%s: %s", folder, f"{', '.join(changed)} {verb}" if changed else "every code file is current")
    return 1 if args.check and stale_anywhere else 0


if __name__ == "__main__":
    sys.exit(main())
