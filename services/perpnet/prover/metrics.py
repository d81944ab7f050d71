"""The prover workers' Prometheus metrics (every worker exports the backlog gauges: take max)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROVE_SECONDS = Histogram(
    "perpnet_prover_prove_seconds",
    "Time to prove one batch (witness and STARK).",
    buckets=(0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300),
)
_ROWS = tuple(float(1 << k) for k in range(10, 21))
TRACE_ROWS = Histogram(
    "perpnet_prover_trace_rows",
    "Rows of each proven batch's trace: a power of two, at least 2,048.",
    buckets=_ROWS,
)
TRACE_ROWS_USED = Histogram(
    "perpnet_prover_trace_rows_used",
    "Rows each proven batch filled; the rest of its trace is padding.",
    buckets=_ROWS,
)
BATCHES = Counter(
    "perpnet_prover_batches",
    "Batch jobs by outcome: proven, failed (the prover refused it), duplicate, skipped.",
    ("outcome",),
)
RECLAIMED = Counter(
    "perpnet_prover_reclaimed_jobs", "Jobs taken over from a worker that left them idle."
)
QUEUE_DEPTH = Gauge(
    "perpnet_prover_queue_depth", "Batches cut but not yet proven (sequenced or proving)."
)
OLDEST_UNPROVEN = Gauge(
    "perpnet_prover_oldest_unproven_age_seconds",
    "Age of the oldest batch not yet proven (0: none).",
)
