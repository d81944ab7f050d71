"""What the oracle, prover and bridge need from the sequencer: submit, read state and batches.

SubmitTx is idempotent by transaction hash, so a call that failed with
UNAVAILABLE or a deadline is retried as it is. A refusal by the state machine
(FAILED_PRECONDITION / INVALID_ARGUMENT, "<ErrorCode>: message") is returned
as `Refused` rather than raised: for a feeder it is an outcome, not a fault.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
import grpc.aio

from perpnet.core.markets import MarketSet
from perpnet.core.state import Globals
from perpnet.proto.v1 import sequencer_pb2, sequencer_pb2_grpc
from perpnet.runtime.channels import is_serving, open_channel

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True, slots=True)
class Accepted:
    seq: int
    batch_id: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Refused:
    code: str  # the core ErrorCode, or the gRPC status name when there is none
    message: str


@dataclass(frozen=True, slots=True)
class Counters:
    """The L1-facing counters at the head of ExchangeState.globals_bytes()."""

    clock_ms: int
    next_deposit_id: int
    next_forced_id: int

    @classmethod
    def parse(cls, globals_: bytes) -> Counters:
        g = Globals.decode(globals_, MarketSet())
        return cls(g.clock_ms, g.next_deposit_id, g.next_forced_id)


class SequencerClient:
    """A channel to the sequencer with retries where they are safe."""

    def __init__(self, address: str, timeout_s: float = 5.0, attempts: int = 3) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.channel = open_channel(address)
        self.stub = sequencer_pb2_grpc.SequencerStub(self.channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self.channel.close(None)

    async def serving(self) -> bool:
        return await is_serving(self.channel)

    async def submit(self, tx: bytes) -> Accepted | Refused:
        """Submit one encoded transaction; raises grpc.aio.AioRpcError once retries run out."""
        for attempt in range(self.attempts):
            try:
                reply = await self.stub.SubmitTx(
                    sequencer_pb2.SubmitTxRequest(tx=tx), timeout=self.timeout_s
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() in RETRYABLE and attempt + 1 < self.attempts:
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                if exc.code() in (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.INVALID_ARGUMENT,
                ):
                    details = exc.details() or ""
                    code, _, message = details.partition(": ")
                    return Refused(code if message else exc.code().name, message or details)
                raise
            return Accepted(reply.seq, reply.batch_id, reply.duplicate)
        raise AssertionError("unreachable")  # pragma: no cover

    async def state(self) -> sequencer_pb2.StateSummary:
        reply: sequencer_pb2.StateSummary = await self.stub.GetState(
            sequencer_pb2.GetStateRequest(), timeout=self.timeout_s
        )
        return reply

    async def counters(self) -> Counters:
        return Counters.parse((await self.state()).globals)

    async def batch(self, batch_id: int, with_txs: bool = True) -> sequencer_pb2.BatchReply:
        reply: sequencer_pb2.BatchReply = await self.stub.GetBatch(
            sequencer_pb2.GetBatchRequest(batch_id=batch_id, with_txs=with_txs),
            timeout=self.timeout_s * 4,
        )
        return reply
