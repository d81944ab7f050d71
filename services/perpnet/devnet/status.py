"""What `perpnet devnet status` shows: health, heights and the pipeline's key metrics."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from perpnet.devnet.plan import Plan
from perpnet.devnet.supervisor import Started, alive

# the figures a trader would feel: (column, sample key as metrics() names it)
HEADLINES = (
    ("sequenced batch", 'perpnet_batch_highest{stage="sequenced"}'),
    ("proven batch", 'perpnet_batch_highest{stage="proven"}'),
    ("verified batch", 'perpnet_batch_highest{stage="verified"}'),
    ("proof cadence s", "perpnet_bridge_proof_cadence_seconds mean"),
    ("prover queue", "perpnet_prover_queue_depth"),
    ("oldest unproven s", "perpnet_prover_oldest_unproven_age_seconds"),
    ("order ack s", "perpnet_matcher_order_ack_seconds mean"),
    ("insurance fund", "perpnet_margin_insurance_fund_value"),
    ("oracle sources", 'perpnet_oracle_live_sources{market="0"}'),
)


def _port(env: dict[str, str], key: str) -> int:
    return int(env[key])


def health(plan: Plan, process: Started) -> str:
    """SERVING, NOT_SERVING or DOWN: gRPC health (HTTP for the gateway)."""
    if not alive(process.pid):
        return "DOWN"
    env = plan.process_env(process.name, process.service)
    if process.service == "gateway":
        url = f"http://127.0.0.1:{env['PERPNET_GATEWAY_HTTP_PORT']}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as reply:
                return "SERVING" if reply.status == 200 else "NOT_SERVING"
        except OSError:
            return "NOT_SERVING"
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = _port(env, f"PERPNET_{process.service.upper()}_GRPC_PORT")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1.0
            )
    except grpc.RpcError:
        return "NOT_SERVING"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def metrics(plan: Plan, process: Started) -> dict[str, float]:
    """Every sample the process exposes, by sample name (labels folded into the first seen)."""
    env = plan.process_env(process.name, process.service)
    port = _port(env, f"PERPNET_{process.service.upper()}_METRICS_PORT")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1.0) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        total = count = 0.0
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
            if sample.name == f"{family.name}_sum":
                total += sample.value
            elif sample.name == f"{family.name}_count":
                count += sample.value
        if count:  # histograms and summaries: their mean over all labels, for the table
            samples[f"{family.name} mean"] = total / count
    return samples


@dataclass(frozen=True)
class Row:
    name: str
    pid: int
    health: str
    headlines: dict[str, float]


def rows(plan: Plan, processes: Iterable[Started]) -> list[Row]:
    out = []
    for p in processes:
        if not p.service:
            out.append(Row(p.name, p.pid, "UP" if alive(p.pid) else "DOWN", {}))
            continue
        samples = metrics(plan, p)
        found = {label: samples[key] for label, key in HEADLINES if key in samples}
        out.append(Row(p.name, p.pid, health(plan, p), found))
    return out
