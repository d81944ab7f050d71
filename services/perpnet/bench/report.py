"""What every benchmark prints beside its figures: the machine and robust statistics."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path


def machine() -> dict[str, object]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return float(sorted_values[rank])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def process_cpu_seconds(pids: Iterable[int]) -> dict[int, float | None]:
    """By pid: user + system CPU seconds of the process and its live descendants, from
    one read of Linux /proc; None if it is gone. Descendants count: npm's anvil is a
    node shim that runs the real binary."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)

    def tree(pid: int) -> float | None:
        if pid not in stats:
            return None
        ticks, todo = 0, [pid]
        while todo:
            current = todo.pop()
            ticks += int(stats[current][11]) + int(stats[current][12])
            todo.extend(children.get(current, []))
        return ticks / os.sysconf("SC_CLK_TCK")

    return {pid: tree(pid) for pid in pids}
