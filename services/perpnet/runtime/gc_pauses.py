"""Garbage-collector pauses: a metric for them, and a frozen heap to keep them short.

CPython's full collection (generation 2) walks every tracked object. A ready service
holds about 100k that live as long as it does: imported libraries, recovered state.
Every full collection walked them all again, holding the event loop for 60–200 ms;
at 500 orders/s those pauses were most of the p99 of order acks. `freeze_ready_heap`, run
once a service is ready, moves them to the permanent generation, which collections
skip. Objects allocated later are collected as before.

The pause histogram is kept by a gc callback in plain lists and read at scrape time.
A collection can start inside any allocation, even one prometheus_client makes while
it holds its (non-reentrant) lock, so the callback must not call into it.
"""

from __future__ import annotations

import bisect
import gc
import time
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
GENERATIONS = 3


class _Pauses(Collector):
    """Per generation: bucket counts (the last is +Inf) and the sum of pause seconds."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.counts = [[0] * (len(BUCKETS) + 1) for _ in range(GENERATIONS)]
        self.sums = [0.0] * GENERATIONS

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        if self.started is None:  # installed during a collection: its start was not seen
            return
        took, self.started = time.perf_counter() - self.started, None
        generation = info["generation"]
        self.sums[generation] += took
        self.counts[generation][bisect.bisect_left(BUCKETS, took)] += 1

    def collect(self) -> Iterator[Metric]:
        pauses = HistogramMetricFamily(
            "perpnet_gc_pause_seconds",
            "Wall time of each garbage collection, by generation collected: the event loop "
            "and the process's other Python threads wait meanwhile.",
            labels=["generation"],
        )
        bounds = [*(repr(b) for b in BUCKETS), "+Inf"]
        for generation in range(GENERATIONS):
            cumulative = list(accumulate(self.counts[generation]))
            pauses.add_metric(
                [str(generation)], list(zip(bounds, cumulative, strict=True)), self.sums[generation]
            )
        yield pauses
        yield GaugeMetricFamily(
            "perpnet_gc_frozen_objects",
            "Objects in the permanent generation, which collections skip (frozen once ready).",
            value=gc.get_freeze_count(),
        )


_installed: list[_Pauses] = []


def install_pause_metric() -> None:
    """Measure every collection of this process from now on (once per process)."""
    if _installed:
        return
    pauses = _Pauses()
    gc.callbacks.append(pauses.callback)
    REGISTRY.register(pauses)
    _installed.append(pauses)


def freeze_ready_heap() -> int:
    """Collect once, then move every surviving object to the permanent generation.

    Run when a service has just become ready: what it holds then lives until it stops,
    and little is in flight whose cycles a freeze would keep alive (those would never be
    collected: a bounded, one-time cost). Returns the objects frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
