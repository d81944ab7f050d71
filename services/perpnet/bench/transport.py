"""`perpnet bench transport`: the CPU one internal gRPC hop costs, client and server.

Every order crosses the services over gRPC (grpc.aio): the gateway calls the matcher,
the matcher calls the sequencer for each micro-batch. This measures one unary call
with an order-sized payload, echoed by:

- `runtime`: a server run by the services' own runtime (`perpnet.runtime.grpc_server.serve`:
  its interceptor, health, reflection, metrics and heap freeze), called through the
  runtime's channel;
- `bare`: a plain grpc.aio server with the same handler and message limits, the
  baseline, in the same run.

Each server is a process of its own and reports its own CPU time (all its threads) over
the pipe it was started with; the client's is this process's (a progress spinner's
thread included, well under 1 %). Calls are sequential (`concurrency` 1: the latency
path of one request) or from 16 tasks at once (the pipelined case). Medians of `repeats`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

import grpc
import grpc.aio

from perpnet.bench.report import machine, median
from perpnet.runtime.channels import open_channel
from perpnet.runtime.config import ServiceSettings
from perpnet.runtime.grpc_server import MAX_MESSAGE_BYTES, SERVER_OPTIONS, Service, serve

SERVICE = "perpnet.bench.Echo"
METHOD = f"/{SERVICE}/Echo"
CONCURRENCY = (1, 16)
WARM_UP = 200
START_TIMEOUT_S = 60.0
MAX_PAYLOAD = MAX_MESSAGE_BYTES // 2


def run(calls: int = 4000, payload_bytes: int = 200, repeats: int = 3) -> dict[str, Any]:
    if calls < max(CONCURRENCY):
        raise ValueError(f"calls must be at least {max(CONCURRENCY)} (one per concurrent task)")
    if not 0 <= payload_bytes <= MAX_PAYLOAD:
        raise ValueError(f"payload_bytes must be between 0 and {MAX_PAYLOAD}")
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
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
    theirs.close()  # the server's end lives in the server: its exit reads as EOF here
    try:
        if not ours.poll(START_TIMEOUT_S):
            raise RuntimeError(f"the {kind} echo server did not start in {START_TIMEOUT_S:g} s")
        try:
            port = int(ours.recv())
        except EOFError:
            server.join(5)
            raise RuntimeError(
                f"the {kind} echo server exited while starting (exit code {server.exitcode})"
            ) from None
        return asyncio.run(_client(port, lambda: _ask_cpu(ours), calls, payload_bytes))
    finally:
        ours.close()  # the server exits on its own when it sees this, if not killed first
        server.kill()
        server.join(10)


def _ask_cpu(server: Connection) -> float:
    try:
        server.send("cpu")
        return float(server.recv())
    except (EOFError, OSError):
        raise RuntimeError("the echo server exited during the benchmark") from None


async def _client(
    port: int, server_cpu: Callable[[], float], calls: int, payload_bytes: int
) -> dict[int, dict[str, float]]:
    payload = b"\x01" * payload_bytes
    out = {}
    async with open_channel(f"127.0.0.1:{port}") as channel:
        echo: Callable[[bytes], Any] = channel.unary_unary(METHOD, None, None)
        for _ in range(WARM_UP):
            if await echo(payload) != payload:
                raise RuntimeError("the echo server answered with other bytes")
        for concurrency in CONCURRENCY:
            each = calls // concurrency

            async def caller(n: int = each) -> None:
                for _ in range(n):
                    await echo(payload)

            server_before, client_before = server_cpu(), time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(concurrency)))
            wall = time.perf_counter() - started
            client = time.process_time() - client_before
            server = server_cpu() - server_before
            done = each * concurrency
            out[concurrency] = {
                "client_cpu_ms": client / done * 1000,
                "server_cpu_ms": server / done * 1000,
                "hop_cpu_ms": (client + server) / done * 1000,
                "wall_ms": wall / done * 1000,
            }
    return out


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
    """The server process: serve the echo, send the bound port, then answer the parent's
    CPU questions until its end of the pipe closes (it ended, or died), and exit."""
    asyncio.run(_serve_runtime(parent) if kind == "runtime" else _serve_bare(parent))


def _answer_until_parent_goes(parent: Connection) -> None:
    try:
        while parent.recv() == "cpu":
            parent.send(time.process_time())
    except (EOFError, OSError):
        pass
    os._exit(0)


def _started(parent: Connection, port: int) -> None:
    parent.send(port)
    threading.Thread(target=_answer_until_parent_goes, args=(parent,), daemon=True).start()


async def _serve_bare(parent: Connection) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    _started(parent, port)
    await server.wait_for_termination()


async def _serve_runtime(parent: Connection) -> None:
    service = _EchoService(ServiceSettings(service="transport"))
    serving = asyncio.create_task(serve(service, handle_signals=False, freeze_heap=True))
    while not service.recovered:  # application calls are refused until the first ready()
        if serving.done():
            serving.result()  # raises what stopped it
        await asyncio.sleep(0.02)
    _started(parent, service.grpc_port)
    await serving
