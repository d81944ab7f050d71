"""The sequencer's Prometheus metrics (beside the runtime's gRPC ones: SubmitTx latency is
grpc_server_handling_seconds{grpc_method="SubmitTx"}).

Times are exported as timestamps, not ages, as Prometheus prefers: the age of
the state root is `time() - perpnet_sequencer_last_batch_timestamp_seconds`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_FAST = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
_DISK = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)

TXS = Counter(
    "perpnet_sequencer_txs",
    "Submitted transactions by type and outcome: applied, duplicate, or the core ErrorCode.",
    ("tx_type", "outcome"),
)
APPLY_SECONDS = Histogram(
    "perpnet_sequencer_apply_seconds",
    "Time to apply one transaction in the state machine (signature checks included).",
    ("tx_type",),
    buckets=_FAST,
)
COMMIT_SECONDS = Histogram(
    "perpnet_sequencer_commit_seconds",
    "Time to make one group of transactions durable (one database transaction).",
    buckets=_DISK,
)
GROUP_TXS = Histogram(
    "perpnet_sequencer_group_txs",
    "Transactions logged per database transaction (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
LAST_SEQ = Gauge("perpnet_sequencer_last_seq", "The last committed log position.")
BATCH_ID = Gauge("perpnet_sequencer_batch_id", "The highest sequenced batch (-1: none yet).")
BATCH_TXS = Histogram(
    "perpnet_sequencer_batch_txs",
    "Transactions per cut batch.",
    buckets=(0, 1, 8, 32, 64, 128, 256, 384, 512, 1024, 4096),
)
BATCH_INTERVAL = Histogram(
    "perpnet_sequencer_batch_interval_seconds",
    "Time between consecutive batch cuts.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 5, 10, 30),
)
CUTS = Counter(
    "perpnet_sequencer_cuts",
    "Batches cut, by what closed them: txs (batch_max_txs), statement (the L1 verifier's "
    "statement buffer would overflow) or interval.",
    ("reason",),
)
CUT_SECONDS = Histogram(
    "perpnet_sequencer_cut_seconds",
    "Time to close a batch: state root, diff and public inputs.",
    buckets=_DISK,
)
LAST_BATCH_TIME = Gauge(
    "perpnet_sequencer_last_batch_timestamp_seconds", "When the last batch was cut (Unix time)."
)
OPEN_BATCH_TXS = Gauge("perpnet_sequencer_open_batch_txs", "Transactions in the open batch.")
RECOVERY_SECONDS = Gauge(
    "perpnet_sequencer_recovery_seconds", "How long the last replay of the log took."
)
REPLAYED_TXS = Gauge("perpnet_sequencer_replayed_txs", "Transactions the last replay applied.")
PUBLISHED_SEQ = Gauge(
    "perpnet_sequencer_published_seq", "The last log position published to the Redis TXLOG."
)
PUBLISH_ERRORS = Counter(
    "perpnet_sequencer_publish_errors", "Failed attempts to publish to Redis (retried)."
)
WRITE_FAILURES = Counter(
    "perpnet_sequencer_write_failures",
    "Database writes that failed; each one rebuilds the state from the log.",
)
