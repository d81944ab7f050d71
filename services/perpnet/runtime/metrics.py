"""Prometheus metrics: the /metrics endpoint and the standard gRPC server metrics.

The metric names follow go-grpc-prometheus (grpc_server_started_total,
grpc_server_handled_total, grpc_server_handling_seconds) so stock Grafana
dashboards and alert rules work unchanged. Services add their own metrics
with prometheus_client directly; they all land in the default registry.
"""

from __future__ import annotations

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


def start_metrics_server(host: str, port: int) -> tuple[Any, int]:
    """Serve /metrics on a daemon thread; returns (server, bound port): port 0 picks one."""
    server, _thread = prometheus_client.start_http_server(port, addr=host)
    return server, server.server_port
