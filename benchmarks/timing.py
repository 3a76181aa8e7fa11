"""Interleaved timing shared by the benchmarks: load from other processes hits every measurement alike."""

from __future__ import annotations

import time
from collections.abc import Callable


def timed_rounds(measurements: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times per measurement: one warm-up call each, then `repeats` interleaved rounds."""
    for function in measurements.values():
        function()
    times: dict[str, list[float]] = {name: [] for name in measurements}
    for _ in range(repeats):
        for name, function in measurements.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return times
