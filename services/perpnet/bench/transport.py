"""`perpnet bench transport`: the CPU one internal gRPC hop costs, client and server.

Every order crosses the services over gRPC (grpc.aio): the gateway calls the matcher,
the matcher calls the sequencer for each micro-batch. This measures one unary call
with an order-sized payload, echoed by:

- `runtime`: a server run by the services' own runtime (`perpnet.runtime.grpc_server.serve`:
  its interceptor, health, reflection and metrics), called through the runtime's channel;
- `bare`: a plain grpc.aio server with the same handler, the baseline, in the same run.

Each server is a process of its own, so its CPU (Linux /proc) is apart from the
client's (this process). Calls are sequential (`concurrency` 1: the latency path of
one request) or from 16 tasks at once (the pipelined case). Medians of `repeats`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

import grpc
import grpc.aio

from perpnet.bench.report import machine, median, process_cpu_seconds
from perpnet.runtime.channels import open_channel
from perpnet.runtime.config import ServiceSettings
from perpnet.runtime.grpc_server import Service, serve

SERVICE = "perpnet.bench.Echo"
METHOD = f"/{SERVICE}/Echo"
CONCURRENCY = (1, 16)
WARM_UP = 200


def run(calls: int = 4000, payload_bytes: int = 200, repeats: int = 3) -> dict[str, Any]:
    if calls < len(CONCURRENCY) * 16 or payload_bytes < 0 or repeats < 1:
        raise ValueError("calls must be at least 32, payload_bytes at least 0, repeats at least 1")
    runs: dict[str, list[dict[int, dict[str, float]]]] = {"bare": [], "runtime": []}
    for _ in range(repeats):
        for kind in runs:  # alternating, so a slower moment of the machine hits both
            runs[kind].append(_measure(kind, calls, payload_bytes))
    figures: dict[str, Any] = {
        kind: {f"concurrency_{c}": _medians([r[c] for r in results]) for c in CONCURRENCY}
        for kind, results in runs.items()
    }
    figures["runtime_over_bare"] = {
        key: {
            name: round(value / figures["bare"][key][name], 2)
            for name, value in row.items()
            if figures["bare"][key][name] > 0
        }
        for key, row in figures["runtime"].items()
    }
    return {
        "benchmark": "transport",
        "parameters": {
            "calls": calls,
            "payload_bytes": payload_bytes,
            "repeats": repeats,
            "concurrency": list(CONCURRENCY),
            "grpcio": grpc.__version__,
            "call": "unary, bytes echoed, loopback; CPU in ms per call, medians",
        },
        "figures": figures,
        "machine": machine(),
    }


def _medians(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    rows = list(rows)
    return {name: round(median([r[name] for r in rows]), 3) for name in rows[0]}


def _measure(kind: str, calls: int, payload_bytes: int) -> dict[int, dict[str, float]]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=_serve, args=(kind, theirs), daemon=True)
    server.start()
    try:
        if not ours.poll(60):
            raise RuntimeError(f"the {kind} echo server did not start in 60 s")
        port = int(ours.recv())
        return asyncio.run(_client(port, server.pid or 0, calls, payload_bytes))
    finally:
        server.kill()
        server.join(10)


async def _client(
    port: int, pid: int, calls: int, payload_bytes: int
) -> dict[int, dict[str, float]]:
    payload = b"\x01" * payload_bytes
    out = {}
    async with open_channel(f"127.0.0.1:{port}") as channel:
        echo: Callable[[bytes], Any] = channel.unary_unary(METHOD, None, None)
        for _ in range(WARM_UP):
            assert await echo(payload) == payload
        for concurrency in CONCURRENCY:
            each = calls // concurrency

            async def caller(n: int = each) -> None:
                for _ in range(n):
                    await echo(payload)

            server_before, client_before = _server_cpu(pid), time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(concurrency)))
            wall = time.perf_counter() - started
            client = time.process_time() - client_before
            server = _server_cpu(pid) - server_before
            done = each * concurrency
            out[concurrency] = {
                "client_cpu_ms": client / done * 1000,
                "server_cpu_ms": server / done * 1000,
                "hop_cpu_ms": (client + server) / done * 1000,
                "wall_ms": wall / done * 1000,
            }
    return out


def _server_cpu(pid: int) -> float:
    seconds = process_cpu_seconds([pid])[pid]
    if seconds is None:
        raise RuntimeError("the echo server exited during the benchmark")
    return seconds


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


def _handler() -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )


class _EchoService(Service[ServiceSettings]):
    def register(self, server: grpc.aio.Server) -> Iterable[str]:
        server.add_generic_rpc_handlers((_handler(),))
        return (SERVICE,)


def _serve(kind: str, parent: Connection) -> None:
    """The child process: serve the echo, send the bound port, run until killed."""
    asyncio.run(_serve_runtime(parent) if kind == "runtime" else _serve_bare(parent))


async def _serve_bare(parent: Connection) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    parent.send(port)
    await server.wait_for_termination()


async def _serve_runtime(parent: Connection) -> None:
    service = _EchoService(ServiceSettings(service="transport", health_interval_s=0.05))
    serving = asyncio.create_task(serve(service, handle_signals=False))
    while not service.recovered:  # application calls are refused until the first ready()
        if serving.done():
            serving.result()  # raises what stopped it
        await asyncio.sleep(0.02)
    parent.send(service.grpc_port)
    await serving
