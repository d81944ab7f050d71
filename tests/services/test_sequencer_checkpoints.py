"""State checkpoints: written every K batches, recovery from the newest good one gives the root of
a full replay, a corrupt one is skipped for an older one (or genesis), followers start from one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from perpnet.core.encoding import encode_tx
from perpnet.core.markets import USD
from perpnet.proto.v1 import sequencer_pb2 as pb
from perpnet.proto.v1 import sequencer_pb2_grpc as pb_grpc
from perpnet.prover.replica import BatchReplica, RecordedBatch
from perpnet.runtime.db import Database, make_engine
from perpnet.runtime.follower import Follower, checkpoint_state, sequencer_log
from perpnet.runtime.models import StateCheckpoint
from perpnet.runtime.sequencer_client import SequencerClient
from perpnet.sequencer import checkpoints, store
from perpnet.sequencer.checkpoints import Checkpointer
from perpnet.testkit import Desk, trader
from runtime.test_grpc_service import eventually

from .test_sequencer import replay, running, scenario, sequencer_env, submit

TRADERS = [trader(f"checkpointed-{i}") for i in range(16)]


@pytest.fixture(autouse=True)
def every_due_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """No spacing after a write: these tests submit faster than the production pacing allows."""
    monkeypatch.setattr(checkpoints, "SPACING", 0)


def log_of(desk: Desk) -> list[bytes]:
    """37 transactions: 18 batches of two and one open; checkpoints become due 4 times."""
    txs = [desk.deposit(key, 1_000 * USD) for key in TRADERS] + scenario(desk)
    txs += [desk.withdraw(key, USD, nonce=0) for key in TRADERS[:16]]
    return [encode_tx(tx) for tx in txs]


def env_for(tmp_path: Path, redis_url: str, **extra: object) -> dict[str, str]:
    settings: dict[str, object] = {
        "batch_max_txs": 2,
        "batch_interval_ms": 60_000,
        "checkpoint_batches": 4,
        "checkpoint_txs": 0,
        "checkpoint_keep": 3,
    }
    return sequencer_env(tmp_path / "seq.db", redis_url, **{**settings, **extra})


async def newest(stub: pb_grpc.SequencerStub) -> int:
    try:
        reply = await stub.GetCheckpoint(pb.GetCheckpointRequest(), timeout=5)
    except grpc.aio.AioRpcError:
        return -1
    return int(reply.batch_id)


async def fill(env: dict[str, str], txs: list[bytes]) -> bytes:
    """Submit `txs`, wait for the last due checkpoint to be written; the root they lead to."""
    async with running(env) as (_service, stub):
        for raw in txs:
            await submit(stub, raw)
        await eventually(lambda: _at(stub, 15))
        return bytes((await stub.GetState(pb.GetStateRequest())).root)


async def _at(stub: pb_grpc.SequencerStub, batch_id: int) -> bool:
    return await newest(stub) == batch_id


def in_db(tmp_path: Path, work: Callable[[Session], object]) -> object:
    engine = make_engine(f"sqlite:///{tmp_path / 'seq.db'}")
    try:
        with Session(engine) as session, session.begin():
            return work(session)
    finally:
        engine.dispose()


def corrupt(tmp_path: Path, batch_id: int) -> None:
    def flip(session: Session) -> None:
        row = session.get(StateCheckpoint, batch_id)
        assert row is not None
        row.state = row.state[:100] + bytes([row.state[100] ^ 1]) + row.state[101:]

    in_db(tmp_path, flip)


def recovered(tmp_path: Path, desk: Desk) -> store.Recovered:
    return in_db(tmp_path, lambda s: store.replay(s, desk.config))  # type: ignore[return-value]


def test_checkpoints_are_written_every_k_batches_and_pruned(tmp_path: Path, redis_url: str) -> None:
    desk = Desk()
    asyncio.run(fill(env_for(tmp_path, redis_url), log_of(desk)))
    kept = in_db(tmp_path, lambda s: list(s.scalars(select(StateCheckpoint.batch_id))))
    assert kept == [7, 11, 15]  # batches 3, 7, 11, 15 were due; the newest 3 are kept


def test_restart_from_a_checkpoint_gives_the_root_of_a_full_replay(
    tmp_path: Path, redis_url: str
) -> None:
    desk = Desk()
    txs = log_of(desk)
    env = env_for(tmp_path, redis_url)
    root = asyncio.run(fill(env, txs))
    assert root == replay(desk, txs)

    found = recovered(tmp_path, desk)
    assert (found.checkpoint, found.start_seq, found.replayed) == (15, 32, len(txs) - 32)
    assert found.root == root and not found.skipped

    async def restart() -> None:
        async with running(env) as (_service, stub):
            summary = await stub.GetState(pb.GetStateRequest())
            assert (summary.root, summary.last_seq) == (root, len(txs))
            # and it carries on: the next transaction lands in the open batch
            reply = await submit(stub, desk.withdraw(TRADERS[0], USD, nonce=1))
            assert (reply.seq, reply.batch_id) == (len(txs) + 1, 18)

    asyncio.run(restart())


def test_a_corrupt_newest_checkpoint_falls_back_to_an_older_one_then_to_genesis(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    desk = Desk()
    txs = log_of(desk)
    env = env_for(tmp_path, redis_url)
    root = asyncio.run(fill(env, txs))

    corrupt(tmp_path, 15)
    found = recovered(tmp_path, desk)
    assert (found.checkpoint, found.root) == (11, root)
    assert len(found.skipped) == 1 and "checkpoint 15: snapshot: checksum" in found.skipped[0]

    # A checkpoint whose root is not its batch's is refused before it is even decoded.
    in_db(
        tmp_path,
        lambda s: s.execute(
            update(StateCheckpoint).where(StateCheckpoint.batch_id == 11).values(root=b"\1" * 32)
        ),
    )
    corrupt(tmp_path, 7)
    found = recovered(tmp_path, desk)
    assert (found.checkpoint, found.replayed, found.root) == (None, len(txs), root)
    assert [r.split(":")[0] for r in found.skipped] == [
        "checkpoint 15",
        "checkpoint 11",
        "checkpoint 7",
    ]
    assert "batch records" in found.skipped[1]

    async def restart() -> None:
        with caplog.at_level(logging.WARNING):
            async with running(env) as (_service, stub):
                assert (await stub.GetState(pb.GetStateRequest())).root == root
        assert sum(r.getMessage() == "checkpoint skipped" for r in caplog.records) == 3

    asyncio.run(restart())


def test_followers_start_from_the_newest_checkpoint_or_from_genesis(
    tmp_path: Path, redis_url: str
) -> None:
    desk = Desk()
    txs = log_of(desk)
    env = env_for(tmp_path, redis_url)
    asyncio.run(fill(env, txs))

    async def follow() -> tuple[int | None, int, bytes, bytes]:
        async with running(env) as (service, stub):
            older = await stub.GetCheckpoint(pb.GetCheckpointRequest(max_batch_id=10))
            assert (older.batch_id, older.last_seq) == (7, 16)
            with pytest.raises(grpc.aio.AioRpcError) as none:
                await stub.GetCheckpoint(pb.GetCheckpointRequest(max_batch_id=6))
            assert none.value.code() == grpc.StatusCode.NOT_FOUND
            # a caller already standing at batch 8 is not sent the older snapshot
            with pytest.raises(grpc.aio.AioRpcError) as stale:
                await stub.GetCheckpoint(pb.GetCheckpointRequest(max_batch_id=10, min_batch_id=8))
            assert stale.value.code() == grpc.StatusCode.NOT_FOUND
            useful = await stub.GetCheckpoint(
                pb.GetCheckpointRequest(max_batch_id=10, min_batch_id=7)
            )
            assert useful.batch_id == 7

            client = SequencerClient(f"127.0.0.1:{service.grpc_port}")
            follower = Follower(desk.config, None, sequencer_log(client))
            restored = await follower.restore_checkpoint()
            at = follower.last_seq
            await follower.catch_up()
            summary = await stub.GetState(pb.GetStateRequest())
            await client.close()
            assert restored == (follower.checkpoint is not None)
            assert follower.last_seq == summary.last_seq == len(txs)
            return follower.checkpoint, at, follower.state.root(), bytes(summary.root)

    checkpoint, at, root, expected = asyncio.run(follow())
    assert (checkpoint, at, root) == (15, 32, expected)
    asyncio.run(prove_from_a_checkpoint(env, desk))

    for batch_id in (7, 11, 15):
        corrupt(tmp_path, batch_id)  # served as stored: the follower's restore refuses it
    checkpoint, at, root, expected = asyncio.run(follow())
    assert (checkpoint, at, root) == (None, 0, expected)


async def prove_from_a_checkpoint(env: dict[str, str], desk: Desk) -> None:
    """A prover's replica set to an older checkpoint replays the next batches to their records."""
    async with running(env) as (service, _stub):
        client = SequencerClient(f"127.0.0.1:{service.grpc_port}")
        found = await sequencer_log(client).checkpoint(max_batch_id=9)
        assert found is not None and found.batch_id == 7
        replica = BatchReplica(desk.config)
        replica.restore(found.batch_id, checkpoint_state(found, desk.config))
        for batch_id in (8, 9, 10):
            reply = await client.batch(batch_id)
            recorded = RecordedBatch(batch_id, reply.public_inputs, tuple(reply.txs))
            batch = replica.advance(recorded)  # raises if the inputs differ
            assert batch.public_inputs.new_root == reply.new_root
        await client.close()


def test_checkpoints_are_spaced_by_what_the_last_one_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A due cut right after a checkpoint is skipped: checkpoints take a bounded share of time."""
    monkeypatch.setattr(checkpoints, "SPACING", 1_000_000)
    desk = Desk()
    state = desk.state()
    state.apply(desk.deposit(TRADERS[0], USD))

    async def cuts(name: str) -> list[int]:
        async with Database(f"sqlite:///{tmp_path / name}") as db:
            await db.upgrade()
            writer = Checkpointer(
                db, desk.config, every_batches=1, every_txs=0, keep=3, log=logging.getLogger()
            )
            for batch_id in range(3):
                writer.on_cut(batch_id, 1, state)
                writer.committed()
                await writer.close()
            return await db.run(lambda s: list(s.scalars(select(StateCheckpoint.batch_id))))

    assert asyncio.run(cuts("spaced.db")) == [0]
    monkeypatch.setattr(checkpoints, "SPACING", 0)
    assert asyncio.run(cuts("unspaced.db")) == [0, 1, 2]


class _FailingStub:
    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code

    async def GetCheckpoint(self, request: object, timeout: float) -> object:  # noqa: N802
        raise grpc.aio.AioRpcError(self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), "no")


class _Client:
    timeout_s = 1.0

    def __init__(self, code: grpc.StatusCode) -> None:
        self.stub = _FailingStub(code)


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED]
)
def test_a_checkpoint_that_cannot_be_fetched_means_replaying_from_genesis(
    code: grpc.StatusCode,
) -> None:
    """A snapshot past the message limit (or too slow to arrive) must not stop a follower
    forever: it replays the log instead. An unreachable sequencer is still an error."""
    log = sequencer_log(_Client(code))  # type: ignore[arg-type]
    assert asyncio.run(log.checkpoint()) is None
    down = sequencer_log(_Client(grpc.StatusCode.UNAVAILABLE))  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError):
        asyncio.run(down.checkpoint())
