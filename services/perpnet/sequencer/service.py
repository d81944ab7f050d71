"""The Sequencer service: one writer task owns the state; RPCs queue for it or read after it.

See the package docstring for the design; this module is its mechanics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, TypeVar

import grpc
import grpc.aio

from perpnet.core.batch import BatchBuilder, statement_growth_bound, statement_size
from perpnet.core.crypto import keccak
from perpnet.core.encoding import decode_tx
from perpnet.core.errors import CoreError
from perpnet.core.state import ExchangeState
from perpnet.core.txs import TX_TYPES, Tx
from perpnet.proto.v1 import sequencer_pb2 as pb
from perpnet.proto.v1 import sequencer_pb2_grpc as pb_grpc
from perpnet.runtime.clock import now_ms
from perpnet.runtime.db import Database
from perpnet.runtime.grpc_server import Service
from perpnet.runtime.models import BatchRecord
from perpnet.runtime.redis import connect
from perpnet.sequencer import metrics, store
from perpnet.sequencer.checkpoints import Checkpointer
from perpnet.sequencer.publisher import Publisher, wait_any
from perpnet.sequencer.settings import SequencerSettings

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = "perpnet.v1.Sequencer"
DEFAULT_PAGE = 1_000
MAX_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    batch_id: int
    duplicate: bool = False


class WriteFailedError(Exception):
    """The log write failed: the transaction is not acknowledged (a retry is safe)."""


class SkippedError(Exception):
    """Not applied: an earlier transaction of the same prefix chain was not (SubmitTxs)."""


Outcome = Ack | CoreError | WriteFailedError | SkippedError


class _Cut(NamedTuple):
    """A batch closed in memory, counted in the metrics once its record is written."""

    record: BatchRecord
    txs: int
    reason: str  # what closed it: txs, statement or interval


@dataclass(slots=True)
class _Chain:
    """Submissions applied as a prefix: once one is not applied, the later ones are skipped."""

    broken: bool = False


@dataclass(slots=True)
class _Pending:
    tx: Tx
    raw: bytes
    tx_hash: bytes
    received_ms: int
    chain: _Chain | None = None
    future: asyncio.Future[Outcome] = field(default_factory=asyncio.Future)

    def resolve(self, outcome: Outcome) -> None:
        if self.chain is not None and not isinstance(outcome, Ack):
            self.chain.broken = True
        if not self.future.done():  # the caller may have gone (cancelled)
            self.future.set_result(outcome)


def _kind(tx: Tx) -> str:
    return TX_TYPES[type(tx)].name.lower()


def _label(outcome: Outcome) -> str:
    if isinstance(outcome, CoreError):
        return outcome.code.value
    if isinstance(outcome, SkippedError):
        return "skipped"
    return "duplicate" if isinstance(outcome, Ack) and outcome.duplicate else "applied"


class Sequencer(Service[SequencerSettings]):
    def __init__(self, settings: SequencerSettings) -> None:
        super().__init__(settings)
        self.config = settings.exchange_config()
        self.db: Database | None = None
        self.checkpoints: Checkpointer | None = None
        self.builder = BatchBuilder(ExchangeState(self.config))  # replaced by recovery
        self.last_seq = 0  # committed
        self.live = False  # recovered and not rebuilding
        self._open_first_seq = 1
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        # Held by the writer from the first apply of a group to its commit, so that
        # readers only ever see durable state.
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()  # set (and replaced) after every commit
        self.publisher: Publisher | None = None  # fed each commit once running
        self._interval_s = settings.batch_interval_ms / 1000
        # Cut once the statement could not take one more transaction of the largest kind.
        self._statement_cut = settings.batch_max_statement_bytes - statement_growth_bound(
            len(self.config.markets.markets), self.config.tree_depth
        )
        self._deadline = 0.0
        self._last_cut = 0.0

    # ------------------------------------------------------------ lifecycle

    def register(self, server: grpc.aio.Server) -> Iterable[str]:
        pb_grpc.add_SequencerServicer_to_server(SequencerServicer(self), server)  # type: ignore[no-untyped-call]
        return (SERVICE_NAME,)

    async def start(self) -> None:
        if not self.config.oracle_signers:
            self.log.warning("no oracle signers configured: every oracle tick will be refused")
        self.db = await self.resources.enter_async_context(Database(self.settings.database_url))
        await self.db.upgrade()
        self.checkpoints = self._checkpointer(self.db)
        self.resources.push_async_callback(self.checkpoints.close)
        await self._recover()
        client = connect(self.settings.redis_url)
        self.resources.push_async_callback(client.aclose)
        publisher = Publisher(self.db, client, lambda: self._changed, self.stopping, self.log)
        self.publisher = publisher
        for work in (self._write_loop(), publisher.run()):
            self._spawn(work)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)

        async def cancel() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self.resources.push_async_callback(cancel)

    async def ready(self) -> bool:
        # Redis is not a dependency of readiness: acknowledgements never wait for it.
        return self.live and self.db is not None and await self.db.ping()

    def _checkpointer(self, db: Database) -> Checkpointer:
        s = self.settings
        return Checkpointer(
            db,
            self.config,
            every_batches=s.checkpoint_batches,
            every_txs=s.checkpoint_txs,
            keep=s.checkpoint_keep,
            log=self.log,
        )

    async def _recover(self) -> None:
        """Rebuild the state from the newest good checkpoint and the log after it (start, and
        after a failed write)."""
        self.live = False
        started = time.perf_counter()
        db = self._database()
        recovered = await db.run(partial(store.replay, config=self.config))
        for reason in recovered.skipped:
            self.log.warning("checkpoint skipped", extra={"reason": reason})
        if self.checkpoints is not None:
            base = -1 if recovered.checkpoint is None else recovered.checkpoint
            self.checkpoints.reset(base, recovered.start_seq)
        self.builder = recovered.builder
        self.last_seq = recovered.last_seq
        self._open_first_seq = recovered.open_first_seq
        self._last_cut = time.monotonic()
        self._deadline = self._last_cut + self._interval_s
        elapsed = time.perf_counter() - started
        metrics.RECOVERY_SECONDS.set(elapsed)
        metrics.REPLAYED_TXS.set(recovered.replayed)
        metrics.LAST_SEQ.set(self.last_seq)
        metrics.BATCH_ID.set(self.builder.next_batch_id - 1)
        metrics.OPEN_BATCH_TXS.set(len(self.builder))
        self.live = True
        self.log.info(
            "recovered",
            extra={
                "root": recovered.root,
                "last_seq": self.last_seq,
                "next_batch_id": self.builder.next_batch_id,
                "open_batch_txs": len(self.builder),
                "checkpoint": recovered.checkpoint,
                "replayed": recovered.replayed,
                "seconds": round(elapsed, 3),
            },
        )

    def _database(self) -> Database:
        assert self.db is not None, "start() opens the database"
        return self.db

    # --------------------------------------------------------------- writes

    async def submit(self, tx: Tx, raw: bytes, received_ms: int) -> Outcome:
        pending = _Pending(tx, raw, keccak(raw), received_ms)
        self._queue.append(pending)
        self._wake.set()
        return await pending.future

    async def submit_prefix(self, txs: list[tuple[Tx, bytes]], received_ms: int) -> list[Outcome]:
        """Queue `txs` back to back as one chain: applied in order up to the first not applied."""
        chain = _Chain()
        group = [_Pending(tx, raw, keccak(raw), received_ms, chain) for tx, raw in txs]
        self._queue.extend(group)
        self._wake.set()
        return list(await asyncio.gather(*(p.future for p in group)))

    async def _write_loop(self) -> None:
        """The single writer: groups of submissions, and cuts when the interval is up."""
        limit = self.settings.group_max_txs
        while True:
            if not self._queue:
                self._wake.clear()
                await wait_any(self._wake, timeout=max(0.0, self._deadline - time.monotonic()))
            if self._queue:
                group, self._queue[:limit] = self._queue[:limit], []
                await self._guarded(self._commit_group(group), group)
            if time.monotonic() >= self._deadline:
                await self._guarded(self._cut_on_time(), [])

    async def _guarded(self, work: Awaitable[None], group: list[_Pending]) -> None:
        """Run a write; if it fails, refuse its group and rebuild the state from the log."""
        try:
            await work
        except Exception:
            metrics.WRITE_FAILURES.inc()
            self.log.exception("write failed: rebuilding the state from the log")
            for pending in group:
                pending.resolve(WriteFailedError())
            await self._rebuild()
            if self.publisher is not None:  # the write may have committed: never offered
                self.publisher.resync()

    async def _rebuild(self) -> None:
        delay = 0.2
        async with self._lock:
            while True:
                try:
                    await self._recover()
                    return
                except Exception:
                    self.log.exception("rebuilding failed; retrying", extra={"delay_s": delay})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)

    async def _commit_group(self, group: list[_Pending]) -> None:
        db = self._database()
        known = await db.run(partial(store.lookup, hashes=[p.tx_hash for p in group]))
        trusted = self.settings.trust_callers
        outcomes: list[Outcome] = []
        async with self._lock:
            rows: list[dict[str, Any]] = []
            cuts: list[_Cut] = []
            if len(self.builder) and self._statement_full():
                cuts.append(self._cut(self.last_seq, "statement"))  # e.g. a lower limit now
            seen: dict[bytes, Ack] = {h: Ack(s, b, True) for h, (s, b) in known.items()}
            for p in group:
                if p.chain is not None and p.chain.broken:
                    outcomes.append(SkippedError())
                    continue
                previous = seen.get(p.tx_hash)
                if previous is not None:
                    outcomes.append(Ack(previous.seq, previous.batch_id, True))
                    continue
                started = time.perf_counter()
                result = self.builder.add(p.tx, authenticated=trusted)
                metrics.APPLY_SECONDS.labels(_kind(p.tx)).observe(time.perf_counter() - started)
                if isinstance(result, CoreError):
                    if p.chain is not None:
                        p.chain.broken = True
                    outcomes.append(result)
                    continue
                seq = self.last_seq + len(rows) + 1
                ack = Ack(seq, self.builder.next_batch_id)
                rows.append(
                    {
                        "seq": seq,
                        "tx_hash": p.tx_hash,
                        "tx": p.raw,
                        "batch_id": ack.batch_id,
                        "received_ms": p.received_ms,
                        "applied_ms": now_ms(),
                    }
                )
                seen[p.tx_hash] = ack
                outcomes.append(ack)
                if len(self.builder) >= self.settings.batch_max_txs:
                    cuts.append(self._cut(seq, "txs"))
                elif self._statement_full():
                    cuts.append(self._cut(seq, "statement"))
            if rows or cuts:
                started = time.perf_counter()
                await db.run(partial(store.write, rows=rows, batches=[c.record for c in cuts]))
                metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
                metrics.GROUP_TXS.observe(len(rows))
            self.last_seq += len(rows)
        for p, outcome in zip(group, outcomes, strict=True):
            p.resolve(outcome)
            metrics.TXS.labels(_kind(p.tx), _label(outcome)).inc()
        entries = [
            store.LogRow(r["seq"], r["tx"], r["tx_hash"], r["batch_id"], r["received_ms"])
            for r in rows
        ]
        self._committed(cuts, entries)

    async def _cut_on_time(self) -> None:
        if not len(self.builder) and not self.settings.cut_empty_batches:
            self._deadline = time.monotonic() + self._interval_s  # keep the cadence
            return
        async with self._lock:
            cut = self._cut(self.last_seq, "interval")
            await self._database().run(partial(store.write, rows=(), batches=[cut.record]))
        self._committed([cut], [])

    def _statement_full(self) -> bool:
        """The open batch's statement could not take one more transaction of any kind."""
        return statement_size(self.builder.footprint()) > self._statement_cut

    def _cut(self, last_seq: int, reason: str) -> _Cut:
        """Close the open batch as a record to write."""
        txs = len(self.builder)
        started = time.perf_counter()
        batch = self.builder.cut()
        metrics.CUT_SECONDS.observe(time.perf_counter() - started)
        if self.checkpoints is not None:
            self.checkpoints.on_cut(batch.batch_id, last_seq, self.builder.state)
        record = store.batch_record(batch, self._open_first_seq, last_seq)
        self._open_first_seq = last_seq + 1
        now = time.monotonic()
        self._deadline = now + self._interval_s
        return _Cut(record, txs, reason)

    def _committed(self, cuts: list[_Cut], entries: list[store.LogRow]) -> None:
        """After a commit: metrics, hand what it wrote to the publisher, wake the followers."""
        now = time.monotonic()
        for record, txs, reason in cuts:
            metrics.CUTS.labels(reason).inc()
            metrics.BATCH_TXS.observe(txs)
            metrics.BATCH_INTERVAL.observe(now - self._last_cut)
            metrics.BATCH_ID.set(record.id)
            metrics.LAST_BATCH_TIME.set_to_current_time()
            self._last_cut = now
            self.log.debug("batch cut", extra={"batch_id": record.id, "txs": txs})
        metrics.LAST_SEQ.set(self.last_seq)
        metrics.OPEN_BATCH_TXS.set(len(self.builder))
        if self.publisher is not None:
            self.publisher.offer(entries, [cut.record.id for cut in cuts])
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self.checkpoints is not None:
            self.checkpoints.committed()

    # ---------------------------------------------------------------- reads

    async def follow(
        self, fetch: Callable[[int], Awaitable[list[T]]], position: Callable[[T], int], start: int
    ) -> AsyncIterator[T]:
        """What `fetch(cursor)` returns from `start` on, then more after each commit, until stop."""
        cursor = start
        while not self.stopping.is_set():
            changed = self._changed
            page = await fetch(cursor)
            for item in page:
                yield item
            if page:
                cursor = position(page[-1]) + 1
            else:
                await wait_any(changed, self.stopping)


class SequencerServicer(pb_grpc.SequencerServicer):
    def __init__(self, service: Sequencer) -> None:
        self.service = service

    async def _admit(self, raws: Iterable[bytes], context: Context) -> list[tuple[Tx, bytes]]:
        """Decode every transaction and check the service is live, or abort changing nothing."""
        service = self.service
        decoded: list[tuple[Tx, bytes]] = []
        for raw in raws:
            try:
                decoded.append((decode_tx(raw, service.config.domain), raw))
            except CoreError as exc:
                metrics.TXS.labels("undecodable", exc.code.value).inc()
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not service.live:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "rebuilding the state from the log")
        return decoded

    async def SubmitTx(  # noqa: N802 - the proto's name
        self, request: pb.SubmitTxRequest, context: Context
    ) -> pb.SubmitTxReply:
        received_ms = now_ms()
        [(tx, _)] = await self._admit([request.tx], context)
        outcome = await self.service.submit(tx, request.tx, received_ms)
        if isinstance(outcome, CoreError):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(outcome))
        if not isinstance(outcome, Ack):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the log write failed; retry")
        return pb.SubmitTxReply(
            seq=outcome.seq,
            tx_hash=keccak(request.tx),
            batch_id=outcome.batch_id,
            duplicate=outcome.duplicate,
        )

    async def SubmitTxs(  # noqa: N802 - the proto's name
        self, request: pb.SubmitTxsRequest, context: Context
    ) -> pb.SubmitTxsReply:
        received_ms = now_ms()
        txs = await self._admit(request.txs, context)
        outcomes = await self.service.submit_prefix(txs, received_ms) if txs else []
        if outcomes and isinstance(outcomes[0], WriteFailedError):  # nothing applied
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the log write failed; retry")
        results = []
        for (_, raw), outcome in zip(txs, outcomes, strict=True):
            if isinstance(outcome, Ack):
                results.append(
                    pb.SubmitTxResult(
                        applied=True,
                        seq=outcome.seq,
                        tx_hash=keccak(raw),
                        batch_id=outcome.batch_id,
                        duplicate=outcome.duplicate,
                    )
                )
            elif isinstance(outcome, CoreError):
                results.append(pb.SubmitTxResult(refused=str(outcome)))
            elif isinstance(outcome, WriteFailedError):
                results.append(pb.SubmitTxResult(refused="UNAVAILABLE: the log write failed"))
            else:
                results.append(pb.SubmitTxResult())
        return pb.SubmitTxsReply(results=results)

    async def GetState(  # noqa: N802
        self, request: pb.GetStateRequest, context: Context
    ) -> pb.StateSummary:
        service = self.service
        async with service._lock:
            state = service.builder.state
            return pb.StateSummary(
                root=state.root(),
                last_seq=service.last_seq,
                next_batch_id=service.builder.next_batch_id,
                globals=state.globals_bytes(),
                open_batch_txs=len(service.builder),
            )

    async def GetAccount(  # noqa: N802
        self, request: pb.GetAccountRequest, context: Context
    ) -> pb.AccountReply:
        service = self.service
        async with service._lock:
            state = service.builder.state
            if request.WhichOneof("key") == "owner":
                found = state.account_id(request.owner.owner, request.owner.subaccount)
                account_id = -1 if found is None else found
            else:
                account_id = request.account_id
            try:
                leaf, proof = state.account_proof(account_id)
            except CoreError as exc:
                await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            return pb.AccountReply(
                account_id=account_id, account=leaf, root=state.root(), proof=proof
            )

    async def GetBatch(  # noqa: N802
        self, request: pb.GetBatchRequest, context: Context
    ) -> pb.BatchReply:
        found = await self._batches(request.batch_id, 1, request.with_txs)
        if not found or found[0].batch_id != request.batch_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no batch {request.batch_id}")
        return found[0]

    async def StreamBatches(  # noqa: N802
        self, request: pb.StreamBatchesRequest, context: Context
    ) -> AsyncIterator[pb.BatchReply]:
        page = 16 if request.with_txs else DEFAULT_PAGE
        fetch = partial(self._batches, limit=page, with_txs=request.with_txs)
        async for batch in self.service.follow(fetch, _batch_id, request.from_batch_id):
            yield batch

    async def GetTxs(self, request: pb.GetTxsRequest, context: Context) -> pb.TxsReply:  # noqa: N802
        limit = min(request.limit or DEFAULT_PAGE, MAX_PAGE)
        txs = await self._txs(request.from_seq, limit)
        last = max(self.service.last_seq, txs[-1].seq if txs else 0)
        return pb.TxsReply(txs=txs, last_seq=last)

    async def StreamTxs(  # noqa: N802
        self, request: pb.StreamTxsRequest, context: Context
    ) -> AsyncIterator[pb.LoggedTx]:
        fetch = partial(self._txs, limit=DEFAULT_PAGE)
        async for tx in self.service.follow(fetch, _seq, max(1, request.from_seq)):
            yield tx

    async def GetCheckpoint(  # noqa: N802
        self, request: pb.GetCheckpointRequest, context: Context
    ) -> pb.CheckpointReply:
        limit = request.max_batch_id if request.HasField("max_batch_id") else None
        least = request.min_batch_id if request.HasField("min_batch_id") else None
        db = self.service._database()
        found = await db.run(partial(store.read_checkpoint, max_batch_id=limit, min_batch_id=least))
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no checkpoint at or before that batch")
        return pb.CheckpointReply(
            batch_id=found.batch_id, last_seq=found.last_seq, root=found.root, state=found.state
        )

    async def _txs(self, from_seq: int, limit: int) -> list[pb.LoggedTx]:
        db = self.service._database()
        rows = await db.run(partial(store.read_txs, from_seq=from_seq, limit=limit))
        return [
            pb.LoggedTx(
                seq=r.seq,
                tx=r.tx,
                tx_hash=r.tx_hash,
                batch_id=r.batch_id,
                received_ms=r.received_ms,
            )
            for r in rows
        ]

    async def _batches(self, from_id: int, limit: int, with_txs: bool) -> list[pb.BatchReply]:
        db = self.service._database()
        found = await db.run(
            partial(store.read_batches, from_id=from_id, limit=limit, with_txs=with_txs)
        )
        return [
            pb.BatchReply(
                batch_id=r.id,
                old_root=r.old_root,
                new_root=r.new_root,
                public_inputs=r.public_inputs,
                state_diff=r.state_diff,
                first_seq=r.first_seq,
                last_seq=r.last_seq,
                txs=txs,
                status=r.status.value,
            )
            for r, txs in found
        ]


def _seq(tx: pb.LoggedTx) -> int:
    return tx.seq


def _batch_id(batch: pb.BatchReply) -> int:
    return batch.batch_id
