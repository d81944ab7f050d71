"""A toy service on the runtime (not a perpnet service): prover status and oracle prices.

It borrows two perpnet protos so the tests exercise a unary RPC (GetStatus,
optionally slow, to have something in flight at SIGTERM) and a server stream
(StreamPrices, which ends when the service stops). Readiness is scripted:
ready `ready_after_s` after start (0: never by itself), or when the
test flips `ready_now`.

Run it as a process: python tests/runtime/example_service.py
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import grpc.aio

from perpnet.proto.v1 import oracle_pb2, oracle_pb2_grpc, prover_pb2, prover_pb2_grpc
from perpnet.runtime.config import Seconds, ServiceSettings
from perpnet.runtime.grpc_server import Service, run_service


@dataclass(frozen=True)
class ExampleSettings(ServiceSettings):
    delay_s: Seconds = 0.0  # how long GetStatus takes
    ready_after_s: Seconds = 0.0


class Prover(prover_pb2_grpc.ProverServicer):
    def __init__(self, service: Example) -> None:
        self.service = service

    async def GetStatus(  # noqa: N802 - the name is the proto's
        self, request: prover_pb2.GetStatusRequest, context: Any
    ) -> prover_pb2.ProverStatus:
        await asyncio.sleep(self.service.settings.delay_s)
        self.service.served += 1
        return prover_pb2.ProverStatus(worker_id="example", proven=self.service.served)


class Oracle(oracle_pb2_grpc.OracleServicer):
    def __init__(self, service: Example) -> None:
        self.service = service

    async def StreamPrices(  # noqa: N802 - the name is the proto's
        self, request: oracle_pb2.StreamPricesRequest, context: Any
    ) -> AsyncIterator[oracle_pb2.PriceTick]:
        tick = 0
        while not self.service.stopping.is_set():
            tick += 1
            yield oracle_pb2.PriceTick(market_id=1, price=str(1000 + tick))
            await asyncio.sleep(0.05)


class Example(Service[ExampleSettings]):
    def __init__(self, settings: ExampleSettings) -> None:
        super().__init__(settings)
        self.served = 0
        self.ready_now = False
        self.started_at = 0.0

    def register(self, server: grpc.aio.Server) -> Iterable[str]:
        prover_pb2_grpc.add_ProverServicer_to_server(Prover(self), server)
        oracle_pb2_grpc.add_OracleServicer_to_server(Oracle(self), server)
        return ("perpnet.v1.Prover", "perpnet.v1.Oracle")

    async def start(self) -> None:
        self.started_at = time.monotonic()

    async def ready(self) -> bool:
        elapsed = time.monotonic() - self.started_at
        return self.ready_now or (
            self.settings.ready_after_s > 0 and elapsed >= self.settings.ready_after_s
        )


if __name__ == "__main__":
    raise SystemExit(run_service(Example, ExampleSettings, "example"))
