"""A prover worker: N replicas of this service share the batches through a consumer group.

Each worker reads topics.BATCHES as consumer `consumer` of the `topics.PROVERS`
group. For a batch it fetches the transactions (sequencer GetBatch with_txs),
brings its replica to the state before the batch (from the sequencer's newest
checkpoint before it when that saves replaying batches, else by replaying
them: a checkpoint that does not restore is skipped), proves the batch from its
record (the replica's `prove_next`: one replay both builds the witness and moves
the replica past the batch), stores the proof (proofs table; the batch becomes
PROVEN), acknowledges the job and announces it on topics.PROOFS.

A worker killed mid-proof leaves its job pending; another takes it over with
XAUTOCLAIM once it has been idle for `reclaim_after_s`. While proving, a worker
re-claims its own job every third of that period so a slow proof is not stolen.
A batch that is already proven is acknowledged and skipped (a job may come twice).

A batch the prover refuses (StarkProverError: a transaction the AIR does not
support yet, such as liquidations, deleveraging and forced withdrawals) is
recorded FAILED with the reason and counted; the worker moves on. The bridge
cannot post past a FAILED batch: that is a known gap until the AIR covers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import grpc
import grpc.aio
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from perpnet.core.snapshot import SnapshotError
from perpnet.proto.v1 import prover_pb2, prover_pb2_grpc
from perpnet.prover import metrics
from perpnet.prover.replica import BatchReplica, RecordedBatch, ReplicaDivergedError
from perpnet.runtime import topics
from perpnet.runtime.clock import now_ms
from perpnet.runtime.config import ConfigError, Range
from perpnet.runtime.db import Database
from perpnet.runtime.follower import ExchangeSettings, SequencerLog, checkpoint_state
from perpnet.runtime.grpc_server import Service, run_service
from perpnet.runtime.models import BatchRecord, BatchStatus, ProofRecord
from perpnet.runtime.redis import Job, StreamGroup, connect, ping
from perpnet.runtime.sequencer_client import SequencerClient
from perpnet.stark.batch_proof import BatchProof, prove_prepared
from perpnet.stark.errors import StarkProverError
from perpnet.stark.params import DEFAULT_PARAMS

UNPROVEN = (BatchStatus.SEQUENCED, BatchStatus.PROVING)
DONE = (BatchStatus.PROVEN, BatchStatus.POSTED, BatchStatus.VERIFIED, BatchStatus.FAILED)
PROOFS_MAXLEN = 100_000


@dataclass(frozen=True, kw_only=True)
class ProverSettings(ExchangeSettings):
    """The exchange's settings (the replica must match the sequencer) and the worker's."""

    consumer: str = ""  # the worker's name in the group; default: prover-<host>-<pid>
    reclaim_after_s: Annotated[float, Range(0.1, 86_400)] = 30.0
    poll_ms: Annotated[int, Range(10, 60_000)] = 1000
    metrics_interval_s: Annotated[float, Range(0.1, 3600)] = 2.0
    # CPU niceness of the worker (0-19): proving is background work that, on a machine
    # shared with the order path, would otherwise take a core from it mid-request.
    nice: Annotated[int, Range(0, 19)] = 0

    def consumer_name(self) -> str:
        return self.consumer or f"prover-{socket.gethostname()}-{os.getpid()}"


def _prove_next(replica: BatchReplica, recorded: RecordedBatch) -> tuple[BatchProof, int]:
    """The proof, and how many of its trace's rows the batch filled (the rest is padding
    up to a power of two: the prover's work follows the trace, not the batch)."""
    prepared = replica.prove_next(recorded)
    return prove_prepared(prepared, DEFAULT_PARAMS), prepared.witness.rows_used


def _claim(session: Session, batch_id: int, at_ms: int) -> BatchRecord | None:
    """Mark the batch PROVING; None if it is already done (or unknown)."""
    record = session.get(BatchRecord, batch_id)
    if record is None or record.status in DONE:
        return None
    if record.status == BatchStatus.SEQUENCED:
        record.advance(BatchStatus.PROVING, at_ms)
    return record


def _store_proof(
    session: Session, batch_id: int, proof: bytes, prover: str, prove_ms: int, at_ms: int
) -> bool:
    """Store the proof and mark the batch PROVEN; False if another worker got there first."""
    record = session.get(BatchRecord, batch_id)
    if record is None or session.get(ProofRecord, batch_id) is not None:
        return False
    started = record.proving_ms or at_ms - prove_ms
    session.add(
        ProofRecord(
            batch_id=batch_id,
            proof=proof,
            prover_id=prover,
            wait_ms=max(0, started - (record.sequenced_ms or started)),
            prove_ms=prove_ms,
            created_ms=at_ms,
        )
    )
    if record.status in UNPROVEN:
        record.advance(BatchStatus.PROVEN, at_ms)
    return True


def _fail(session: Session, batch_id: int, reason: str, at_ms: int) -> None:
    record = session.get(BatchRecord, batch_id)
    if record is not None and record.status in UNPROVEN:
        record.advance(BatchStatus.FAILED, at_ms)
        record.failure = reason[:500]


@dataclass(frozen=True, slots=True)
class Backlog:
    unproven: int
    oldest_sequenced_ms: int | None


def backlog(session: Session) -> Backlog:
    """Batches not yet proven and when the oldest of them was cut."""
    count, oldest = session.execute(
        select(func.count(), func.min(BatchRecord.sequenced_ms)).where(
            BatchRecord.status.in_(UNPROVEN)
        )
    ).one()
    return Backlog(int(count), None if oldest is None else int(oldest))


class ProverServicer(prover_pb2_grpc.ProverServicer):
    def __init__(self, service: ProverService) -> None:
        self.service = service

    async def GetStatus(  # noqa: N802 - the proto's name
        self, request: prover_pb2.GetStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> prover_pb2.ProverStatus:
        s = self.service
        return prover_pb2.ProverStatus(
            worker_id=s.consumer,
            busy=s.current is not None,
            batch_id=s.current or 0,
            started_ms=s.current_started_ms,
            proven=s.proven,
            last_prove_ms=s.last_prove_ms,
        )


class ProverService(Service[ProverSettings]):
    def __init__(self, settings: ProverSettings) -> None:
        super().__init__(settings)
        self.consumer = settings.consumer_name()
        self.replica = BatchReplica(settings.exchange_config())
        self.current: int | None = None
        self.current_started_ms = 0
        self.proven = 0
        self.last_prove_ms = 0
        self._tasks: list[asyncio.Task[None]] = []

    def register(self, server: grpc.aio.Server) -> Iterable[str]:
        prover_pb2_grpc.add_ProverServicer_to_server(  # type: ignore[no-untyped-call]
            ProverServicer(self), server
        )
        return ("perpnet.v1.Prover",)

    async def start(self) -> None:
        self.db = await self.resources.enter_async_context(Database(self.settings.database_url))
        await self.db.upgrade()
        self.redis = connect(self.settings.redis_url)
        self.resources.push_async_callback(self.redis.aclose)
        self.jobs = StreamGroup(self.redis, topics.BATCHES, topics.PROVERS, self.consumer)
        self.proofs = StreamGroup(self.redis, topics.PROOFS, "", self.consumer)
        self.sequencer = SequencerClient(self.settings.peer("sequencer"))
        self.resources.push_async_callback(self.sequencer.close)
        self._tasks = [asyncio.create_task(self._work()), asyncio.create_task(self._observe())]

    async def ready(self) -> bool:
        return await ping(self.redis) and await self.db.ping()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _work(self) -> None:
        reclaim_ms = round(self.settings.reclaim_after_s * 1000)
        while not self.stopping.is_set():
            try:
                await self.jobs.ensure()
                jobs = await self.jobs.reclaim(reclaim_ms, count=1)
                if jobs:
                    metrics.RECLAIMED.inc()
                    self.log.info("reclaimed", extra={"job": jobs[0].fields})
                else:
                    jobs = await self.jobs.read(count=1, block_ms=self.settings.poll_ms)
                for job in jobs:
                    await self.handle(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("prover loop failed; retrying")
                await asyncio.sleep(1.0)

    async def handle(self, job: Job) -> None:
        """Prove the job's batch (or record why not), then acknowledge it."""
        batch_id = int(job.fields[b"batch_id"])
        record = await self.db.run(partial(_claim, batch_id=batch_id, at_ms=now_ms()))
        if record is None:
            metrics.BATCHES.labels("skipped").inc()
            await self.jobs.ack(job)
            return
        self.current, self.current_started_ms = batch_id, now_ms()
        heartbeat = asyncio.create_task(self._heartbeat(job))
        try:
            await self._prove(batch_id)
        finally:
            heartbeat.cancel()
            self.current = None
        await self.jobs.ack(job)

    async def _prove(self, batch_id: int) -> None:
        try:
            recorded = await self._prepare(batch_id)
            started = time.perf_counter()
            proof, rows_used = await asyncio.to_thread(_prove_next, self.replica, recorded)
            seconds = time.perf_counter() - started
        except (StarkProverError, ReplicaDivergedError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            await self.db.run(partial(_fail, batch_id=batch_id, reason=reason, at_ms=now_ms()))
            metrics.BATCHES.labels("failed").inc()
            self.log.error("batch not proven", extra={"batch_id": batch_id, "reason": reason})
            return
        self.last_prove_ms = round(seconds * 1000)
        stored = await self.db.run(
            partial(
                _store_proof,
                batch_id=batch_id,
                proof=proof.encode(),
                prover=self.consumer,
                prove_ms=self.last_prove_ms,
                at_ms=now_ms(),
            )
        )
        metrics.PROVE_SECONDS.observe(seconds)
        metrics.TRACE_ROWS.observe(proof.extras.trace_length)
        metrics.TRACE_ROWS_USED.observe(rows_used)
        metrics.BATCHES.labels("proven" if stored else "duplicate").inc()
        self.proven += 1
        self.log.info(
            "batch proven",
            extra={
                "batch_id": batch_id,
                "seconds": round(seconds, 3),
                "trace_rows": proof.extras.trace_length,
                "rows_used": rows_used,
            },
        )
        await self.proofs.add({"batch_id": batch_id, "prover": self.consumer}, PROOFS_MAXLEN)

    async def _prepare(self, batch_id: int) -> RecordedBatch:
        """The batch as recorded, the replica just before it: the earlier batches replayed
        (after a checkpoint)."""
        await self._skip_ahead(batch_id)
        if self.replica.next_batch_id > batch_id:
            self.replica.reset()
        while True:
            current = self.replica.next_batch_id
            reply = await self.sequencer.batch(current, with_txs=True)
            recorded = RecordedBatch(
                reply.batch_id, reply.public_inputs, tuple(reply.txs), reply.state_diff
            )
            if current == batch_id:
                return recorded
            self.replica.advance(recorded)

    async def _skip_ahead(self, batch_id: int) -> None:
        """Stand at the newest checkpoint before `batch_id` if it saves replaying batches."""
        current = self.replica.next_batch_id
        if batch_id == 0 or current == batch_id:
            return
        least = current if current < batch_id else None  # behind: only a later one helps
        found = await SequencerLog(self.sequencer).checkpoint(
            max_batch_id=batch_id - 1, min_batch_id=least
        )
        if found is None:
            return
        try:
            state = checkpoint_state(found, self.replica.config)
        except SnapshotError as exc:
            self.log.warning("checkpoint refused; replaying", extra={"error": str(exc)})
            return
        self.replica.restore(found.batch_id, state)

    async def _heartbeat(self, job: Job) -> None:
        """Keep our job from looking idle (and being reclaimed) while a long proof runs."""
        interval = self.settings.reclaim_after_s / 3
        while True:
            await asyncio.sleep(interval)
            await self.redis.xclaim(
                self.jobs.stream, self.jobs.group, self.consumer, 0, [job.id], justid=True
            )

    async def _observe(self) -> None:
        """Queue depth and the age of the oldest unproven batch, from the database."""
        while True:
            with contextlib.suppress(Exception):
                found = await self.db.run(backlog)
                metrics.QUEUE_DEPTH.set(found.unproven)
                oldest = found.oldest_sequenced_ms
                age_ms = 0 if oldest is None else max(0, now_ms() - oldest)
                metrics.OLDEST_UNPROVEN.set(age_ms / 1000)
            await asyncio.sleep(self.settings.metrics_interval_s)


def lower_priority(nice: int) -> None:
    """Raise every thread's niceness to `nice` (never lower one: that needs privileges).
    Linux sets niceness per thread, and NumPy's BLAS threads start at import, before
    main(); threads started later inherit the caller's."""
    tasks = Path("/proc/self/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            if nice > os.getpriority(os.PRIO_PROCESS, tid):
                os.setpriority(os.PRIO_PROCESS, tid, nice)


def main() -> int:
    with contextlib.suppress(ConfigError):  # run_service reports a bad configuration
        lower_priority(ProverSettings.from_env("prover").nice)
    return run_service(ProverService, ProverSettings, "prover")
