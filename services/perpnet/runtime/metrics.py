"""Prometheus metrics: the /metrics endpoint and the standard gRPC server metrics.

The metric names follow go-grpc-prometheus (grpc_server_started_total,
grpc_server_handled_total, grpc_server_handling_seconds) so stock Grafana
dashboards and alert rules work unchanged. Services add their own metrics
with prometheus_client directly; they all land in the default registry.
"""

from __future__ import annotations

import asyncio
from typing import Any

import prometheus_client
from prometheus_client import Counter, Histogram

_LABELS = ("grpc_type", "grpc_service", "grpc_method")
STARTED = Counter("grpc_server_started", "RPCs started on the server.", _LABELS)
HANDLED = Counter(
    "grpc_server_handled", "RPCs completed on the server, by status code.", (*_LABELS, "grpc_code")
)
HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its end, as seen by the server.",
    _LABELS,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


LOOP_LAG_INTERVAL_S = 0.05
LOOP_LAG = Histogram(
    "perpnet_event_loop_lag_seconds",
    "How late the event loop wakes a task sleeping 50 ms: time it gave to other work "
    "(a long callback, a garbage-collector pause) or waited for a CPU. Every request "
    "in flight waits as long.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)


async def watch_loop_lag() -> None:
    """Sample the running loop's lag into LOOP_LAG until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + LOOP_LAG_INTERVAL_S
        await asyncio.sleep(LOOP_LAG_INTERVAL_S)
        LOOP_LAG.observe(max(0.0, loop.time() - due))


def start_metrics_server(host: str, port: int) -> tuple[Any, int]:
    """Serve /metrics on a daemon thread; returns (server, bound port): port 0 picks one."""
    server, _thread = prometheus_client.start_http_server(port, addr=host)
    return server, server.server_port
