"""Follow the sequencer's committed log and keep an `ExchangeState` replica of it.

The margin engine, the matcher, the gateway and the prover all need the state
the sequencer has committed. A `Follower` rebuilds it from genesis on start
and then keeps up:

- the fast feed is the Redis stream `topics.TXLOG` (fields seq, tx, batch_id),
  read with XREAD from where the follower stands;
- the durable source is the sequencer's log RPC (`GetTxs`): it fills every
  gap, whether the stream was trimmed, Redis lost entries or was down.

A fresh follower whose log source also serves checkpoints (`sequencer_log`:
the sequencer's `GetCheckpoint`) starts from the newest one instead of
genesis, so a restart replays only the log after it. A checkpoint that is
missing or does not restore (another configuration, corrupt bytes) is logged
and the follower replays from genesis, as before.

Transactions are applied in seq order (the first is 1) with
`authenticated=True`, as the sequencer checked signatures at admission. A
transaction the replica refuses means its configuration differs from the
sequencer's: the follower stops (`diverged`) rather than serve a wrong view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, Protocol, runtime_checkable

import grpc
import grpc.aio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from perpnet.core import snapshot
from perpnet.core.encoding import decode_tx, encode_tx
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.events import Event
from perpnet.core.state import ExchangeConfig, ExchangeState
from perpnet.core.txs import Tx
from perpnet.core.typed_data import ANVIL_CHAIN_ID, Domain
from perpnet.proto.v1 import sequencer_pb2
from perpnet.runtime import topics
from perpnet.runtime.clock import not_before
from perpnet.runtime.config import ConfigError, Range, ServiceSettings
from perpnet.runtime.sequencer_client import Accepted, SequencerClient

log = logging.getLogger("perpnet.follower")

FIRST_SEQ = 1
MAX_RESTAMPS = 5
TxHandler = Callable[[int, Tx, tuple[Event, ...]], None]
LogPage = Callable[[int], Awaitable[list[tuple[int, bytes]]]]  # from_seq -> [(seq, tx bytes)]


@dataclass(frozen=True, kw_only=True)
class ExchangeSettings(ServiceSettings):
    """The exchange configuration every replica must share with the sequencer."""

    chain_id: int = ANVIL_CHAIN_ID
    verifying_contract: str = "0x" + "00" * 20
    oracle_signers: str = ""  # comma-separated addresses (0x...)
    oracle_quorum: Annotated[int, Range(1, 100)] = 1
    max_price_age_ms: Annotated[int, Range(1, 86_400_000)] = 30_000
    min_funding_interval_ms: Annotated[int, Range(0, 86_400_000)] = 60_000
    funding_period_ms: Annotated[int, Range(1, 86_400_000)] = 3_600_000

    def exchange_config(self) -> ExchangeConfig:
        """The core configuration; a malformed address is a ConfigError naming the setting."""
        domain = Domain(self.chain_id, _address(self.verifying_contract, "verifying_contract"))
        signers = frozenset(
            _address(text, "oracle_signers") for text in self.oracle_signers.split(",") if text
        )
        try:
            return ExchangeConfig(
                domain=domain,
                oracle_signers=signers,
                oracle_quorum=self.oracle_quorum,
                max_price_age_ms=self.max_price_age_ms,
                min_funding_interval_ms=self.min_funding_interval_ms,
                funding_period_ms=self.funding_period_ms,
            )
        except CoreError as exc:
            raise ConfigError(f"exchange configuration: {exc}") from None


def _address(text: str, setting: str) -> bytes:
    try:
        value = bytes.fromhex(text.strip().removeprefix("0x"))
    except ValueError:
        value = b""
    if len(value) != 20:
        raise ConfigError(f"PERPNET_{setting.upper()}: {text!r} is not a 20-byte address")
    return value


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A state checkpoint as the sequencer serves it (GetCheckpoint)."""

    batch_id: int
    last_seq: int
    root: bytes
    state: bytes  # perpnet.core.snapshot encoding


@runtime_checkable
class CheckpointSource(Protocol):
    async def checkpoint(
        self, max_batch_id: int | None = None, min_batch_id: int | None = None
    ) -> Checkpoint | None:
        """The newest checkpoint at or before `max_batch_id` (None: the newest) and at or
        after `min_batch_id`, if any."""
        ...


class SequencerLog:
    """The sequencer's durable log, page by page (`GetTxs`), and its checkpoints."""

    def __init__(self, client: SequencerClient, limit: int = 1000) -> None:
        self.client = client
        self.limit = limit

    async def __call__(self, from_seq: int) -> list[tuple[int, bytes]]:
        request = sequencer_pb2.GetTxsRequest(from_seq=from_seq, limit=self.limit)
        reply = await self.client.stub.GetTxs(request, timeout=self.client.timeout_s)
        return [(entry.seq, entry.tx) for entry in reply.txs]

    async def checkpoint(
        self, max_batch_id: int | None = None, min_batch_id: int | None = None
    ) -> Checkpoint | None:
        """None when there is none, and when one cannot be fetched for any reason but the
        sequencer being unreachable (too large for a message, a timeout): a checkpoint only
        saves replaying, and replaying the log always works."""
        request = sequencer_pb2.GetCheckpointRequest(
            max_batch_id=max_batch_id, min_batch_id=min_batch_id
        )
        try:
            reply = await self.client.stub.GetCheckpoint(request, timeout=self.client.timeout_s * 4)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                log.warning("checkpoint not fetched; replaying", extra={"error": exc.code().name})
            return None
        return Checkpoint(reply.batch_id, reply.last_seq, reply.root, reply.state)


def checkpoint_state(found: Checkpoint, config: ExchangeConfig) -> ExchangeState:
    """The state a fetched checkpoint holds; SnapshotError unless it is intact, taken under
    `config`, and the state of the root its batch recorded."""
    state = snapshot.restore(found.state, config)
    if state.root() != found.root:
        raise snapshot.SnapshotError("it holds another state than its batch's root")
    return state


def sequencer_log(client: SequencerClient, limit: int = 1000) -> SequencerLog:
    """A page reader over the sequencer's durable log that also fetches its checkpoints."""
    return SequencerLog(client, limit)


class FollowerDivergedError(RuntimeError):
    """The replica refused a committed transaction: its configuration is not the sequencer's."""


class Follower:
    """An `ExchangeState` replica that applies the committed log in order."""

    def __init__(
        self,
        config: ExchangeConfig,
        redis: aioredis.Redis | None,
        log_page: LogPage | None,
        *,
        on_tx: TxHandler | None = None,
        stream: str = topics.TXLOG,
        block_ms: int = 500,
        count: int = 500,
    ) -> None:
        self.state = ExchangeState(config)
        self.domain = config.domain
        self.last_seq = FIRST_SEQ - 1
        self.diverged: str | None = None
        self._redis = redis
        self._log_page = log_page
        self._checkpoints = log_page if isinstance(log_page, CheckpointSource) else None
        self.checkpoint: int | None = None  # the batch whose checkpoint the replica started from
        self._on_tx = on_tx
        self._stream = stream
        self._block_ms = block_ms
        self._count = count
        self._entry_id: bytes = b"0-0"
        self._advanced = asyncio.Condition()

    def apply(self, seq: int, data: bytes) -> bool:
        """Apply the entry if it is the next one; False if it is old or leaves a gap."""
        if seq != self.last_seq + 1:
            return False
        tx = decode_tx(data, self.domain)
        try:
            events = self.state.apply(tx, authenticated=True)
        except CoreError as exc:
            self.diverged = f"seq {seq}: {exc}"
            raise FollowerDivergedError(self.diverged) from exc
        self.last_seq = seq
        if self._on_tx is not None:
            self._on_tx(seq, tx, events)
        return True

    async def restore_checkpoint(self) -> bool:
        """Start from the newest checkpoint rather than genesis; only before anything is applied.

        `on_tx` is not called for the transactions the checkpoint already holds.
        """
        if self._checkpoints is None or self.last_seq != FIRST_SEQ - 1:
            return False
        found = await self._checkpoints.checkpoint()
        if found is None:
            return False
        try:
            state = checkpoint_state(found, self.state.config)
        except snapshot.SnapshotError as exc:
            log.warning("checkpoint refused; replaying from genesis", extra={"error": str(exc)})
            return False
        self.state, self.last_seq, self.checkpoint = state, found.last_seq, found.batch_id
        log.info(
            "replica restored from a checkpoint",
            extra={"batch_id": found.batch_id, "last_seq": found.last_seq},
        )
        await self._notify()
        return True

    async def catch_up(self) -> int:
        """Apply the durable log from the next seq to its end; returns how many were applied."""
        if self._log_page is None:
            return 0
        applied = 0
        while True:
            page = await self._log_page(self.last_seq + 1)
            fresh = [entry for entry in page if entry[0] > self.last_seq]
            for seq, data in fresh:
                if not self.apply(seq, data):
                    gap = f"the sequencer's log skips from {self.last_seq} to {seq}"
                    raise FollowerDivergedError(gap)
                applied += 1
            if applied:
                await self._notify()
            if not fresh:
                return applied

    async def poll(self) -> int:
        """Read the stream once (waiting up to block_ms); on a gap, catch up from the log."""
        if self._redis is None:
            applied = await self.catch_up()
            if not applied:
                await asyncio.sleep(self._block_ms / 1000)
            return applied
        reply: Any = await self._redis.xread(
            {self._stream: self._entry_id}, count=self._count, block=self._block_ms
        )
        applied = 0
        gap = False
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                self._entry_id = entry_id
                seq = int(fields[b"seq"])
                if seq <= self.last_seq:
                    continue
                if not self.apply(seq, fields[b"tx"]):
                    gap = True
                    break
                applied += 1
            if gap:
                break
        if applied:
            await self._notify()
        if gap:
            applied += await self.catch_up()
        return applied

    async def run(self, stop: asyncio.Event, retry_s: float = 0.5) -> None:
        """Follow until `stop` (or divergence): the durable log first, then the stream."""
        caught_up = False
        while not stop.is_set():
            try:
                if not caught_up:
                    await self.restore_checkpoint()
                    await self.catch_up()
                    caught_up = True
                await self.poll()
            except FollowerDivergedError:
                log.critical("replica diverged from the sequencer", extra={"at": self.diverged})
                return
            except (RedisError, OSError, grpc.aio.AioRpcError) as exc:
                log.warning("follower retrying", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), retry_s)
                caught_up = False  # entries may have been missed while the feed was down

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """Wait until the replica has applied `seq`; False on timeout."""

        async def reached() -> None:
            async with self._advanced:
                await self._advanced.wait_for(lambda: self.last_seq >= seq)

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            return False
        return True

    async def _notify(self) -> None:
        async with self._advanced:
            self._advanced.notify_all()


class RefusedError(Exception):
    """The sequencer refused a transaction: `code` is the core ErrorCode (or the gRPC code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class UnreachableError(RefusedError):
    """The sequencer did not answer (`code` is the gRPC code, after the client's retries):
    the transaction may have been applied or not; only the log can tell."""


def next_stamp(last_ms: int) -> int:
    """The stamp after a CLOCK refusal of one stamped `last_ms`: now, or just after it."""
    return not_before(last_ms + 1)


def restamped(tx: Tx) -> Tx:
    return replace(tx, timestamp_ms=next_stamp(tx.timestamp_ms))


async def submit_stamped(client: SequencerClient, tx: Tx) -> int:
    """Submit `tx` and return its seq; raise RefusedError if it is refused (UnreachableError
    if the sequencer did not answer).

    Submitters stamp their own transactions and the sequencer applies them in
    arrival order, so a transaction stamped just before another's may arrive
    after it and be refused as CLOCK. No signature covers the timestamp, so it
    is then restamped and sent again.
    """
    for _ in range(MAX_RESTAMPS):
        try:
            outcome = await client.submit(encode_tx(tx))
        except grpc.aio.AioRpcError as exc:
            raise UnreachableError(exc.code().name, exc.details() or "") from None
        if isinstance(outcome, Accepted):
            return outcome.seq
        if outcome.code != ErrorCode.CLOCK:
            raise RefusedError(outcome.code, outcome.message)
        tx = restamped(tx)
    raise RefusedError(ErrorCode.CLOCK, "the sequencer's clock kept moving past ours")


async def sync_with_sequencer(
    follower: Follower, client: SequencerClient, stop: asyncio.Event
) -> bool:
    """Wait until the replica has every transaction the sequencer had logged when asked.

    Retries while the sequencer is down; False if `stop` came first.
    """
    while not stop.is_set():
        try:
            if await caught_up(follower, client, 2.0):
                return True
        except grpc.aio.AioRpcError as exc:
            log.info("waiting for the sequencer", extra={"error": exc.code().name})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    return False


async def caught_up(follower: Follower, client: SequencerClient, timeout: float) -> bool:
    """One try: the replica applies what the sequencer has logged now, within `timeout`."""
    summary = await client.state()
    return await follower.wait_for(int(summary.last_seq), timeout)


def stamp(follower: Follower) -> int:
    """A timestamp for a new transaction: the wall clock, never behind the replica's clock."""
    return not_before(follower.state.clock_ms)


async def repeat(
    interval_s: float, work: Callable[[], Awaitable[None]], stop: asyncio.Event, what: str
) -> None:
    """Run `work` every `interval_s` until `stop`; a failure is logged and the loop goes on."""
    while not stop.is_set():
        try:
            await work()
        except Exception:
            log.exception("periodic work failed", extra={"work": what})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
