"""The project speaks of itself only: no tracked file names a round of work or an insider label.

Names say what a thing is (`seed42`, `cross_device`, "the default recipe"), never when or in which round of work it
was made; the history is in CHANGELOG.md, in the project's own terms, and in git. The patterns are spelt apart
below so that this file passes its own test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT

ROUND_WORDS = {
    "a numbered round of work": re.compile(r"\bsession" + r"s? \d", re.IGNORECASE),
    "a folder named by round": re.compile(r"\bcpu" + r"\d+_"),
    "an insider recipe label": re.compile(r"\brecipe" + r" [A-Z]\b"),
}


def tracked_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
        return None  # binary files (images, weights, clips) and links


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    return [REPO_ROOT / name for name in listed.decode().split("\0") if name]


def offending_lines(path: Path) -> list[str]:
    text = tracked_text(path)
    if text is None:
        return []
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        found += [f"{path.relative_to(REPO_ROOT)}:{number}: {what}: {line.strip()[:120]}"
                  for what, pattern in ROUND_WORDS.items() if pattern.search(line)]
    return found


@pytest.mark.parametrize("text, what", [("made in session" + " 12", "a numbered round of work"),
                                         ("see cpu" + "19_crops_25ep", "a folder named by round"),
                                         ("recipe" + " B at 1e-3", "an insider recipe label")])
def test_patterns_catch_round_words(tmp_path: Path, text: str, what: str) -> None:
    assert [name for name, pattern in ROUND_WORDS.items() if pattern.search(text)] == [what]


@pytest.mark.parametrize("text", ["seed42, cross_device", "the default recipe", "one session of the demo"])
def test_patterns_leave_plain_words(text: str) -> None:
    assert not [name for name, pattern in ROUND_WORDS.items() if pattern.search(text)]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_no_round_words_in_tracked_files() -> None:
    offenders = [line for path in tracked_files() for line in offending_lines(path)]
    assert not offenders, "tracked files name rounds of work:\n" + "\n".join(offenders[:50])
