"""The bridge's Prometheus metrics: the L1 side of the pipeline and the users' latencies."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800)

HIGHEST_BATCH = Gauge(
    "perpnet_batch_highest",
    "The highest batch id per stage: sequenced, proven, verified (on L1); -1 for none.",
    ("stage",),
)
PROOF_CADENCE = Histogram(
    "perpnet_bridge_proof_cadence_seconds",
    "Seconds between consecutive verified state updates on L1.",
    buckets=_LATENCY,
)
STATE_UPDATE_GAS = Histogram(
    "perpnet_bridge_state_update_gas",
    "L1 gas per state update, by transaction: fact (registering the proof) and update.",
    ("tx",),
    buckets=(5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 3e6, 5e6, 8e6, 1.2e7, 2e7, 3e7),
)
LAST_GAS = Gauge("perpnet_bridge_last_state_update_gas", "Gas of the last state update (both txs).")
POSTED = Counter("perpnet_bridge_state_updates", "State updates by outcome.", ("outcome",))
BLOCKED = Gauge(
    "perpnet_bridge_blocked",
    "1 while the next batch to post cannot be (FAILED in the prover, or its proof was rejected).",
)
WITHDRAWAL_STAGE = Histogram(
    "perpnet_withdrawal_stage_seconds",
    "Time spent reaching each withdrawal stage from the previous one "
    "(batched, proven, verified, claimed).",
    ("stage",),
    buckets=_LATENCY,
)
WITHDRAWAL_LATENCY = Histogram(
    "perpnet_withdrawal_latency_seconds",
    "Withdrawal latency from the L2 request: to verified (claimable), to claimed (end to end).",
    ("stage",),
    buckets=_LATENCY,
)
DEPOSIT_LATENCY = Histogram(
    "perpnet_deposit_latency_seconds",
    "Deposit latency from its L1 block to a stage: confirmed, credited (on L2), verified.",
    ("stage",),
    buckets=_LATENCY,
)
L1_HEAD = Gauge("perpnet_bridge_l1_head_block", "The latest L1 block the bridge saw.")
FORCED_PENDING = Gauge(
    "perpnet_bridge_forced_pending", "Forced requests on L1 not yet served in a verified batch."
)
FORCED_DEADLINE = Gauge(
    "perpnet_bridge_forced_deadline_seconds",
    "Seconds left before the earliest unserved forced request may freeze the rollup.",
)
ERRORS = Counter("perpnet_bridge_errors", "Loop iterations that failed, by loop.", ("loop",))
