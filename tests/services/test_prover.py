"""Prover workers: two processes on one consumer group against a real redis-server and sequencer.

The worker holding a batch is killed with SIGKILL; the other reclaims the job
once it has been idle for `reclaim_after_s`, proves it and stores a proof that
verifies. A forced withdrawal is proven like any other transaction; a batch the
prover refuses (a position past the AIR's 2^20-lot bound, 104.8576 BTC) is
recorded FAILED with the reason, and the batches after it are still
proven.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from sqlalchemy.orm import Session

from perpnet.bridge.statement import Statement, genesis_globals
from perpnet.core.batch import PublicInputs
from perpnet.core.encoding import encode_tx
from perpnet.core.markets import USD
from perpnet.core.txs import ForcedWithdrawal, Tx
from perpnet.proto.v1 import sequencer_pb2 as pb
from perpnet.proto.v1 import sequencer_pb2_grpc as pb_grpc
from perpnet.runtime import topics
from perpnet.runtime.db import make_engine
from perpnet.runtime.localproc import LocalProcess, spawn
from perpnet.runtime.models import BatchRecord, BatchStatus, ProofRecord
from perpnet.stark.batch_proof import verify_batch
from perpnet.testkit import Desk, trader
from services.test_sequencer import running, sequencer_env

ALICE = trader("alice")
T = TypeVar("T")


async def until(probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while (value := await probe()) is None:
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
    return value


def test_a_killed_workers_batch_is_reclaimed_and_failures_do_not_block(
    tmp_path: Path, redis_url: str
) -> None:
    asyncio.run(_scenario(tmp_path, redis_url))


async def _scenario(tmp_path: Path, redis_url: str) -> None:
    db_url = f"sqlite:///{tmp_path / 'perpnet.db'}"
    env = sequencer_env(tmp_path / "perpnet.db", redis_url, batch_interval_ms=200)
    async with running(env) as (sequencer, stub):
        worker_env = {
            **os.environ,
            **env,
            "PERPNET_SEQUENCER_ADDR": f"127.0.0.1:{sequencer.grpc_port}",
            "PERPNET_PROVER_RECLAIM_AFTER_S": "1.5",
            "PERPNET_PROVER_POLL_MS": "100",
        }
        workers = {
            name: spawn(
                name,
                [sys.executable, "-m", "perpnet.prover"],
                tmp_path / f"{name}.log",
                env={**worker_env, "PERPNET_PROVER_CONSUMER": name, "PERPNET_PROVER_NICE": nice},
            )
            for name, nice in (("prover-a", "10"), ("prover-b", "3"))
        }
        # proving is background work: each worker lowers its CPU priority at start
        for name, nice in (("prover-a", 10), ("prover-b", 3)):
            await until(partial(_niced, workers[name].pid, nice))
        client = aioredis.Redis.from_url(redis_url)
        engine = make_engine(db_url)
        try:
            await _kill_the_holder(stub, client, engine, workers)
        finally:
            for worker in workers.values():
                worker.stop()
            await client.aclose()
            engine.dispose()


async def _niced(pid: int, nice: int) -> bool | None:
    """True once every thread of the process runs at niceness `nice` (NumPy's BLAS
    threads included; proc(5): field 19 of each task's stat)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            found.add(int(fields[16]))
    return True if found == {nice} else None


async def _submit(stub: pb_grpc.SequencerStub, *txs: Tx) -> int:
    """Submit in one request (one group: one batch, whatever the batch timer does), then
    wait for that batch to be cut; returns its id."""
    reply = await stub.SubmitTxs(pb.SubmitTxsRequest(txs=[encode_tx(tx) for tx in txs]))
    assert all(r.applied for r in reply.results), reply
    batches = {r.batch_id for r in reply.results}
    assert len(batches) == 1, f"the transactions landed in batches {sorted(batches)}"
    batch_id: int = batches.pop()

    async def cut() -> bool | None:
        state = await stub.GetState(pb.GetStateRequest())
        return True if state.next_batch_id > batch_id else None

    await until(cut)
    return batch_id


def _batch(engine: object, batch_id: int) -> tuple[BatchRecord, ProofRecord | None]:
    with Session(engine) as session:  # type: ignore[call-overload]
        record = session.get(BatchRecord, batch_id)
        return record, session.get(ProofRecord, batch_id)


async def _settled(engine: object, batch_id: int) -> tuple[BatchRecord, ProofRecord | None]:
    async def probe() -> tuple[BatchRecord, ProofRecord | None] | None:
        record, proof = _batch(engine, batch_id)
        done = record is not None and record.status in (BatchStatus.PROVEN, BatchStatus.FAILED)
        return (record, proof) if done else None

    return await until(probe)


async def _kill_the_holder(
    stub: pb_grpc.SequencerStub,
    client: aioredis.Redis,
    engine: object,
    workers: dict[str, LocalProcess],
) -> None:
    desk = Desk()
    first = await _submit(stub, desk.deposit(ALICE, 100 * USD), desk.withdraw(ALICE, 10 * USD, 0))

    async def holder() -> str | None:
        try:
            pending = await client.xpending_range(topics.BATCHES, topics.PROVERS, "-", "+", 10)
        except ResponseError:  # the group does not exist yet
            return None
        return pending[0]["consumer"].decode() if pending else None

    doomed = await until(holder)
    workers[doomed].signal(signal.SIGKILL)
    survivor = next(name for name in workers if name != doomed)
    assert _batch(engine, first)[1] is None, "killed before it could prove"

    record, proof = await _settled(engine, first)
    assert record.status == BatchStatus.PROVEN and proof is not None
    assert proof.prover_id == survivor
    statement = Statement.of(record.public_inputs, record.state_diff, genesis_globals(desk.state()))
    verify_batch(statement.public_inputs, statement.diff, proof.proof)
    after_first = PublicInputs.decode(record.public_inputs).globals
    assert "reclaimed" in workers[survivor].log_tail(200)
    announced = await client.xrange(topics.PROOFS)
    assert [fields[b"batch_id"] for _id, fields in announced] == [str(first).encode()]

    forced = ForcedWithdrawal(desk.tick(), 0, ALICE.address, 0, 5 * USD, ALICE.address)
    served = await _submit(stub, forced)
    record, proof = await _settled(engine, served)
    assert record.status == BatchStatus.PROVEN and proof is not None
    statement = Statement.of(record.public_inputs, record.state_diff, after_first)
    verify_batch(statement.public_inputs, statement.diff, proof.proof)

    bob, carol = trader("bob"), trader("carol")
    await _submit(
        stub,
        desk.price(0, 50_000 * USD),
        desk.deposit(bob, 1_000_000 * USD),
        desk.deposit(carol, 1_000_000 * USD),
    )
    # 110 BTC: past the AIR's bound of 2^20 lots (the core allows it, margin permitting)
    refused = await _submit(stub, desk.cross(bob, carol, 0, True, 110 * 10**10, 50_000 * USD))
    later = await _submit(stub, desk.deposit(ALICE, 7 * USD))
    record, proof = await _settled(engine, refused)
    assert record.status == BatchStatus.FAILED and proof is None
    assert record.failure is not None and "StarkProverError" in record.failure
    record, proof = await _settled(engine, later)
    assert record.status == BatchStatus.PROVEN and proof is not None

    async def drained() -> bool | None:
        """Every job acknowledged, the failed one's included (a worker acks just after it
        stores the proof, so the last ack may trail the PROVEN status by a moment)."""
        pending = await client.xpending(topics.BATCHES, topics.PROVERS)
        empty = {"pending": 0, "min": None, "max": None, "consumers": []}
        return True if pending == empty else None

    await until(drained, timeout=10.0)
