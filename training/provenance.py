"""Where a run ran, as data: the commit and the device facts every results.json records.

`device_facts()` is what cards and reports read (e.g. "CPU or GPU scale" is `device["gpu"] is not None`);
`machine_description()` is the same facts as the one-line `machine` string of older results files.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

NO_GPU = "no GPU"  # how `machine_description` names a run without one


def git_commit() -> str:
    """$USVCL_COMMIT when set (a copy whose .git is missing or stale, e.g. on a lent GPU machine), else the short
    commit of the working tree, else "unknown"."""
    if os.environ.get("USVCL_COMMIT"):
        return os.environ["USVCL_COMMIT"]
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_command(module: str) -> str:
    """The command line of this process as a user types it (`python -m MODULE ARGS`): no interpreter or
    `__main__.py` path of the machine it ran on (`accelerate launch` runs name the module the same way)."""
    return " ".join(["python -m " + module, *sys.argv[1:]])


def device_facts() -> dict[str, Any]:
    """`{"gpu": name or None, "gpu_count", "cpu_count", "torch_threads", "architecture", "processor"}`."""
    on_gpu = torch.cuda.is_available()
    return {
        "gpu": torch.cuda.get_device_name(0) if on_gpu else None,
        "gpu_count": torch.cuda.device_count() if on_gpu else 0,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "architecture": platform.machine(),
        "processor": platform.processor() or "cpu",
    }


def machine_description(facts: dict[str, Any] | None = None) -> str:
    """CPU count and GPU name (if any) in one line, from `device_facts()`."""
    facts = facts or device_facts()
    return (f"{facts['architecture']} {facts['cpu_count']}-core CPU ({facts['torch_threads']} torch threads, "
            f"{facts['processor']}), {facts['gpu'] or NO_GPU}")


def run_device(results: dict[str, Any]) -> dict[str, Any]:
    """The device facts of a results.json: its `device` field, or (a file from before that field) the GPU named at
    the end of its `machine` line, `None` where that line says `no GPU`."""
    if isinstance(results.get("device"), dict):
        return results["device"]
    machine = str(results.get("machine", ""))
    gpu = machine.rsplit(", ", 1)[-1] if machine and not machine.endswith(NO_GPU) else None
    return {"gpu": gpu, "machine": machine}


__all__ = ["device_facts", "git_commit", "machine_description", "run_device"]
