"""The steps in order, their completion markers, and which of them a run executes.

A step writes under `WORK/<step>/` only; its marker `WORK/<step>/done.json` is written last (atomically), so a
killed step has none and runs again from scratch (its folder is emptied first). A finished step is skipped; `--from
STEP` runs that step and every later one again, and so does a step that was not done (every later step reads its
outputs); `--only STEP` runs that one step.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable

from training.atomic import write_json_atomic
from training.release.context import Context
from training.release.recipes import ReleaseError

LOGGER = logging.getLogger(__name__)
MARKER = "done.json"


@dataclasses.dataclass(frozen=True)
class Step:
    """A named step: what it does (one line, for the plan) and the function that does it."""

    name: str
    summary: str
    run: Callable[[Context], None]


def is_done(context: Context, step: Step) -> bool:
    """True when the step's completion marker exists."""
    return (context.step_dir(step.name) / MARKER).is_file()


def selected(steps: list[Step], start: str | None, only: str | None) -> set[str]:
    """Names of the steps that must run again whether or not they are done (`--from`, `--only`)."""
    names = [step.name for step in steps]
    for option, value in (("--from", start), ("--only", only)):
        if value is not None and value not in names:
            raise ReleaseError(f"{option} {value!r}: no such step; steps: {', '.join(names)}")
    if only is not None:
        return {only}
    return set(names[names.index(start):]) if start is not None else set()


def plan(context: Context, steps: list[Step], start: str | None, only: str | None) -> list[tuple[Step, str]]:
    """Each step with what this run does with it: `run`, `rerun`, `skip (done)` or `skip (not selected)`."""
    forced = selected(steps, start, only)
    actions = []
    for step in steps:
        if only is not None and step.name != only:
            actions.append((step, "skip (not selected)"))
        elif step.name in forced or (only is None and any(not action.startswith("skip") for _, action in actions)):
            actions.append((step, "rerun" if is_done(context, step) else "run"))  # its inputs may have changed
        else:
            actions.append((step, "skip (done)" if is_done(context, step) else "run"))
    return actions


def run_step(context: Context, step: Step) -> float:
    """Empty the step's folder, run it, write its marker last; returns the wall time in seconds."""
    folder = context.step_dir(step.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    step.run(context)
    wall = time.perf_counter() - started
    write_json_atomic(folder / MARKER, {"step": step.name, "wall_time_s": wall, "smoke": context.smoke})
    return wall


def run_steps(context: Context, steps: list[Step], start: str | None = None, only: str | None = None) -> list[str]:
    """Log the plan, then run what it says in order; returns the names of the steps that ran."""
    actions = plan(context, steps, start, only)
    LOGGER.info("release plan (%s, work %s, output %s):", "smoke" if context.smoke else "real", context.work,
                context.output)
    for number, (step, action) in enumerate(actions, 1):
        LOGGER.info("  %2d. %-10s %-20s %s", number, step.name, action, step.summary)
    ran = []
    for step, action in actions:
        if action.startswith("skip"):
            LOGGER.info("step %s: %s", step.name, action)
            continue
        LOGGER.info("step %s: %s ...", step.name, action)
        wall = run_step(context, step)
        LOGGER.info("step %s: done in %.1f s", step.name, wall)
        ran.append(step.name)
    return ran


__all__ = ["MARKER", "Step", "is_done", "plan", "run_step", "run_steps", "selected"]
