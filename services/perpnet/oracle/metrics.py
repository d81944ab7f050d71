"""The oracle's Prometheus metrics, labelled by market id.

Staleness is the age of the price in force on L2: now minus the oldest
observation of the last accepted tick (it grows while ticks fail).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PRICE = Gauge("perpnet_oracle_price", "The last accepted index price (quantums).", ("market",))
STALENESS = Gauge(
    "perpnet_oracle_staleness_seconds",
    "Age of the price in force: now minus the oldest observation of the last accepted tick.",
    ("market",),
)
LIVE_SOURCES = Gauge(
    "perpnet_oracle_live_sources",
    "Sources in the last aggregate (fresh and not outliers).",
    ("market",),
)
REJECTED = Counter(
    "perpnet_oracle_rejected_observations",
    "Observations left out of an aggregate, by reason (stale, outlier, missing).",
    ("market", "reason"),
)
TICKS = Counter(
    "perpnet_oracle_ticks",
    "Aggregation rounds by outcome: accepted, refused (by the core), no_quorum, unavailable.",
    ("market", "outcome"),
)
