"""What the services need from the sequencer: submit, read state and batches.

SubmitTx and SubmitTxs (several transactions applied as a prefix, the
matcher's micro-batches) are idempotent by transaction hash, so a call that
failed with UNAVAILABLE or a deadline is retried as it is. A refusal by the state machine
(FAILED_PRECONDITION / INVALID_ARGUMENT, "<ErrorCode>: message") is returned
as `Refused` rather than raised: for a feeder it is an outcome, not a fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
import grpc.aio

from perpnet.core.markets import MarketSet
from perpnet.core.state import Globals
from perpnet.proto.v1 import sequencer_pb2, sequencer_pb2_grpc
from perpnet.runtime.channels import is_serving, open_channel

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
REFUSALS = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Accepted:
    seq: int
    batch_id: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Refused:
    code: str  # the core ErrorCode, or the gRPC status name when there is none
    message: str

    @classmethod
    def parse(cls, details: str, fallback: str) -> Refused:
        """From "<ErrorCode>: message"; `fallback` is the code when there is none."""
        code, _, message = details.partition(": ")
        return cls(code, message) if message else cls(fallback, details)


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

    async def _retried(self, call: Callable[[], Awaitable[R]]) -> R | Refused:
        """`call()` again after UNAVAILABLE or a deadline (submissions are idempotent)."""
        for attempt in range(self.attempts):
            try:
                return await call()
            except grpc.aio.AioRpcError as exc:
                if exc.code() in RETRYABLE and attempt + 1 < self.attempts:
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                if exc.code() in REFUSALS:
                    return Refused.parse(exc.details() or "", exc.code().name)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def submit(self, tx: bytes) -> Accepted | Refused:
        """Submit one encoded transaction; raises grpc.aio.AioRpcError once retries run out."""
        request = sequencer_pb2.SubmitTxRequest(tx=tx)
        reply = await self._retried(lambda: self.stub.SubmitTx(request, timeout=self.timeout_s))
        if isinstance(reply, Refused):
            return reply
        return Accepted(reply.seq, reply.batch_id, reply.duplicate)

    async def submit_many(self, txs: Sequence[bytes]) -> list[Accepted | Refused | None]:
        """Submit encoded transactions as a prefix (SubmitTxs): for each, Accepted, or Refused
        for the first refused one and None for the later ones, which were not applied.

        A refusal of the whole call (a transaction that does not decode) is that
        Refused for the first one. Raises grpc.aio.AioRpcError once retries run out.
        """
        request = sequencer_pb2.SubmitTxsRequest(txs=list(txs))
        reply = await self._retried(lambda: self.stub.SubmitTxs(request, timeout=self.timeout_s))
        if isinstance(reply, Refused):
            return [reply, *(None for _ in txs[1:])]
        out: list[Accepted | Refused | None] = []
        for r in reply.results:
            if r.applied:
                out.append(Accepted(r.seq, r.batch_id, r.duplicate))
            else:
                out.append(Refused.parse(r.refused, "REFUSED") if r.refused else None)
        return out

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
