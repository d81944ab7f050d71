"""The runtime's gRPC lifecycle, on the example service: truthful health, reflection, metrics,
the readiness gate, and graceful shutdown of a real process on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from perpnet.proto.v1 import oracle_pb2, oracle_pb2_grpc, prover_pb2, prover_pb2_grpc
from perpnet.runtime.channels import is_serving, open_channel
from perpnet.runtime.grpc_server import StartupError, run_service, serve
from perpnet.runtime.localproc import LocalProcess, spawn

from .example_service import Example, ExampleSettings

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
EXAMPLE = Path(__file__).with_name("example_service.py")
FAST = {
    "PERPNET_GRPC_PORT": "0",
    "PERPNET_METRICS_PORT": "0",
    "PERPNET_HEALTH_INTERVAL_S": "0.05",
}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def check(channel: grpc.aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5, wait_for_ready=True
    )
    return int(reply.status)


async def listed_services(channel: grpc.aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    reply = await call.read()
    call.cancel()
    return [s.name for s in reply.list_services_response.service]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def handled(samples: dict[Any, float], method: str, code: str) -> float:
    labels = {
        "grpc_code": code,
        "grpc_method": method,
        "grpc_service": "perpnet.v1.Prover",
        "grpc_type": "unary",
    }
    return samples.get(("grpc_server_handled_total", tuple(sorted(labels.items()))), 0.0)


def test_health_gate_reflection_and_metrics_in_process() -> None:
    asyncio.run(_in_process())


def _serve_example() -> tuple[Example, asyncio.Task[None]]:
    """The example service serving in this process (its ports are known once bound)."""
    service = Example(ExampleSettings.from_env("example", FAST))
    return service, asyncio.create_task(serve(service, handle_signals=False))


async def _in_process() -> None:
    service, running = _serve_example()
    await eventually(lambda: asyncio.sleep(0, service.grpc_port != 0))
    async with open_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        # Starting: every name is NOT_SERVING and application RPCs are refused.
        assert await check(channel) == NOT_SERVING
        assert await check(channel, "perpnet.v1.Prover") == NOT_SERVING
        assert not await is_serving(channel)
        prover = prover_pb2_grpc.ProverStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await prover.GetStatus(prover_pb2.GetStatusRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await check(channel, "perpnet.v1.Nope")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

        # The standard Watch sees the change as soon as ready() holds.
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == NOT_SERVING
        service.ready_now = True
        assert (await watch.read()).status == SERVING
        assert await is_serving(channel, "perpnet.v1.Oracle")
        reply = await prover.GetStatus(prover_pb2.GetStatusRequest(), timeout=5)
        assert reply.worker_id == "example" and reply.proven == 1

        # Truthful afterwards too: a lost dependency turns it NOT_SERVING again.
        service.ready_now = False
        assert (await watch.read()).status == NOT_SERVING
        await prover.GetStatus(prover_pb2.GetStatusRequest(), timeout=5)  # recovered: admitted

        names = await listed_services(channel)
        for name in ("perpnet.v1.Prover", "perpnet.v1.Oracle", "grpc.health.v1.Health"):
            assert name in names
        assert "grpc.reflection.v1alpha.ServerReflection" in names

        samples = await asyncio.to_thread(scrape, service.metrics_port)
        assert handled(samples, "GetStatus", "OK") >= 2
        assert handled(samples, "GetStatus", "UNAVAILABLE") >= 1
        count = ("grpc_server_handling_seconds_count", tuple(sorted({
            "grpc_method": "GetStatus", "grpc_service": "perpnet.v1.Prover", "grpc_type": "unary"
        }.items())))  # fmt: skip
        assert samples[count] >= 3

        # Shutdown ends the open Watch instead of waiting out the grace period.
        started = time.monotonic()
        service.request_stop()
        await asyncio.wait_for(running, 5)
        assert time.monotonic() - started < service.settings.shutdown_grace_s / 2
        watch.cancel()


def _log_lines(process: LocalProcess) -> list[dict[str, Any]]:
    text = process.log_path.read_text() if process.log_path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _wait_for_log(
    process: LocalProcess, msg: str, timeout: float = 20.0, **fields: object
) -> dict[str, Any]:
    """The first log entry `msg` that also has `fields`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in _log_lines(process):
            if entry["msg"] == msg and all(entry.get(k) == v for k, v in fields.items()):
                return entry
        assert process.alive(), process.log_tail()
        time.sleep(0.05)
    raise AssertionError(f"no {msg!r} in the log:\n{process.log_tail()}")


def test_sigterm_drains_in_flight_requests_and_exits_zero(tmp_path: Path) -> None:
    env = {
        **os.environ,
        **FAST,
        "PERPNET_EXAMPLE_DELAY_S": "1.0",  # GetStatus takes a second
        "PERPNET_EXAMPLE_READY_AFTER_S": "0.1",
        "PERPNET_SHUTDOWN_GRACE_S": "8",
    }
    process = spawn("example", [sys.executable, str(EXAMPLE)], tmp_path / "example.log", env=env)
    try:
        ports = _wait_for_log(process, "listening")
        asyncio.run(_drain_on_sigterm(process, ports["grpc_port"]))
        started = time.monotonic()
        assert process.popen.wait(8) == 0
        assert time.monotonic() - started < 8
    finally:
        process.stop()
    messages = [entry["msg"] for entry in _log_lines(process)]
    health = [e["status"] for e in _log_lines(process) if e["msg"] == "health"]
    assert health[-1] == "SERVING"
    assert messages.index("health") < messages.index("shutting down")
    assert messages[-1] == "stopped"
    assert all(entry["service"] == "example" for entry in _log_lines(process))


async def _drain_on_sigterm(process: LocalProcess, port: int) -> None:
    async with open_channel(f"127.0.0.1:{port}") as channel:
        await eventually(lambda: is_serving(channel))
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == SERVING
        prices = oracle_pb2_grpc.OracleStub(channel).StreamPrices(oracle_pb2.StreamPricesRequest())
        assert (await prices.read()).market_id == 1
        slow = asyncio.ensure_future(
            prover_pb2_grpc.ProverStub(channel).GetStatus(prover_pb2.GetStatusRequest(), timeout=10)
        )
        await asyncio.sleep(0.3)  # GetStatus is now in flight
        sent = time.monotonic()
        process.signal(signal.SIGTERM)
        assert (await watch.read()).status == NOT_SERVING  # NOT_SERVING comes first
        reply = await slow  # the in-flight request completes
        assert reply.worker_id == "example"
        assert time.monotonic() - sent < 5
        while await prices.read() is not grpc.aio.EOF:  # it ends by itself (stopping was set)
            pass
        assert await prices.code() == grpc.StatusCode.OK


def test_bad_configuration_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERPNET_EXAMPLE_GRPC_PORT", "not-a-port")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = run_service(Example, ExampleSettings, "example")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert code == 2
    [entry] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert entry["level"] == "CRITICAL"
    assert "PERPNET_EXAMPLE_GRPC_PORT='not-a-port': expected an integer" in entry["msg"]


def test_a_failed_start_still_closes_resources() -> None:
    closed: list[str] = []

    class Broken(Example):
        async def start(self) -> None:
            self.resources.callback(closed.append, "db")
            raise RuntimeError("cannot recover state")

    service = Broken(ExampleSettings.from_env("example", FAST))
    with pytest.raises(RuntimeError, match="cannot recover state"):
        asyncio.run(serve(service, handle_signals=False))
    assert closed == ["db"]


def test_a_port_in_use_is_a_clear_startup_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = ExampleSettings.from_env("example", {**FAST, "PERPNET_METRICS_PORT": str(port)})
        with pytest.raises(StartupError, match="set PERPNET_EXAMPLE_METRICS_PORT"):
            asyncio.run(serve(Example(settings), handle_signals=False))


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen once ready", "PERPNET_GC_FREEZE=0"])
def test_the_heap_is_frozen_once_ready_and_pauses_are_exported(
    tmp_path: Path, freeze: bool
) -> None:
    """Collections skip what the service holds once ready, so they no longer walk it."""
    env = {
        **os.environ,
        **FAST,
        "PERPNET_EXAMPLE_READY_AFTER_S": "0.2",
        "PERPNET_GC_FREEZE": "1" if freeze else "0",
    }
    process = spawn("example", [sys.executable, str(EXAMPLE)], tmp_path / "example.log", env=env)
    try:
        ports = _wait_for_log(process, "listening")
        _wait_for_log(process, "health", timeout=10, status="SERVING")
        time.sleep(0.2)
        samples = scrape(ports["metrics_port"])
    finally:
        process.stop()
    frozen = [e for e in _log_lines(process) if e["msg"] == "heap frozen"]
    gauge = samples[("perpnet_gc_frozen_objects", ())]
    full = samples[("perpnet_gc_pause_seconds_count", (("generation", "2"),))]
    for generation in "01":  # exported from the start, before any collection is measured
        assert ("perpnet_gc_pause_seconds_count", (("generation", generation),)) in samples
    if freeze:
        assert len(frozen) == 1 and frozen[0]["objects"] > 20_000  # imports and all
        assert gauge > 20_000  # a frozen object freed by its last reference leaves it
        assert full >= 1  # the freeze collects first, so nothing it keeps is garbage
    else:
        assert frozen == [] and gauge == 0


def test_a_blocked_event_loop_is_measured_as_lag() -> None:
    asyncio.run(_blocked_loop())


async def _blocked_loop() -> None:
    service, running = _serve_example()
    await eventually(lambda: asyncio.sleep(0, service.metrics_port != 0))

    def late(samples: dict[Any, float]) -> float:
        every = samples[("perpnet_event_loop_lag_seconds_count", ())]
        return every - samples[("perpnet_event_loop_lag_seconds_bucket", (("le", "0.1"),))]

    before = late(await asyncio.to_thread(scrape, service.metrics_port))
    time.sleep(0.3)  # a 300 ms callback: everything else on this loop waits
    await asyncio.sleep(0.2)
    assert late(await asyncio.to_thread(scrape, service.metrics_port)) >= before + 1
    service.request_stop()
    await asyncio.wait_for(running, 5)
