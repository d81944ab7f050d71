"""The garbage-collector pause histogram: every collection lands in it, once per process."""

from __future__ import annotations

import gc

from prometheus_client import REGISTRY

from perpnet.runtime.gc_pauses import BUCKETS, install_pause_metric


def _count(generation: int) -> float:
    value = REGISTRY.get_sample_value(
        "perpnet_gc_pause_seconds_count", {"generation": str(generation)}
    )
    return value or 0.0


def test_each_collection_is_counted_under_its_generation_in_cumulative_buckets() -> None:
    install_pause_metric()
    install_pause_metric()  # a second call measures nothing twice
    gc.disable()  # only the collections below
    try:
        before = [_count(g) for g in range(3)]
        gc.collect(1)
        gc.collect(1)
        gc.collect(2)
    finally:
        gc.enable()
    assert _count(1) - before[1] == 2
    assert _count(2) - before[2] == 1
    buckets = [
        REGISTRY.get_sample_value("perpnet_gc_pause_seconds_bucket", {"generation": "1", "le": le})
        or 0.0
        for le in (*(repr(b) for b in BUCKETS), "+Inf")
    ]
    assert buckets == sorted(buckets) and buckets[-1] > 0  # cumulative, as Prometheus reads them
    total = REGISTRY.get_sample_value("perpnet_gc_pause_seconds_sum", {"generation": "2"})
    assert total is not None and total > 0
