"""The sequencer in process: acknowledgements, refusals that change nothing, batches cut by count
and by time, reads from the log, the Redis feeds, and recovery that checks every recorded root."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2

from perpnet.core.batch import BatchBuilder, PublicInputs, statement_growth_bound
from perpnet.core.crypto import keccak
from perpnet.core.encoding import decode_tx, encode_account, encode_tx
from perpnet.core.markets import USD
from perpnet.core.txs import Deposit, Tx, Withdraw
from perpnet.proto.v1 import sequencer_pb2 as pb
from perpnet.proto.v1 import sequencer_pb2_grpc as pb_grpc
from perpnet.runtime import topics
from perpnet.runtime.channels import open_channel
from perpnet.runtime.config import ConfigError
from perpnet.runtime.grpc_server import serve
from perpnet.sequencer import store
from perpnet.sequencer.service import Sequencer
from perpnet.sequencer.settings import SequencerSettings
from perpnet.stark.batch_proof import prepare_batch
from perpnet.stark.batch_statement import statement_bytes
from perpnet.testkit import ORACLE_KEYS, Desk, trader
from runtime.test_grpc_service import check, eventually, scrape

ALICE, BOB = trader("alice"), trader("bob")
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def sequencer_env(db: Path, redis_url: str, **settings: object) -> dict[str, str]:
    """Settings for a sequencer on free ports whose exchange is the testkit's (Desk) one."""
    env = {
        "PERPNET_GRPC_PORT": "0",
        "PERPNET_METRICS_PORT": "0",
        "PERPNET_HEALTH_INTERVAL_S": "0.05",
        "PERPNET_DATABASE_URL": f"sqlite:///{db}",
        "PERPNET_REDIS_URL": redis_url,
        "PERPNET_ORACLE_SIGNERS": ",".join("0x" + k.address.hex() for k in ORACLE_KEYS),
        "PERPNET_ORACLE_QUORUM": "2",
        "PERPNET_MAX_PRICE_AGE_MS": "120000",
        "PERPNET_MIN_FUNDING_INTERVAL_MS": "60000",
        "PERPNET_FUNDING_PERIOD_MS": "60000",
    }
    env.update({f"PERPNET_SEQUENCER_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@contextlib.asynccontextmanager
async def running(env: dict[str, str]) -> AsyncIterator[tuple[Sequencer, pb_grpc.SequencerStub]]:
    service = Sequencer(SequencerSettings.from_env("sequencer", env))
    task = asyncio.create_task(serve(service, handle_signals=False))
    await eventually(lambda: asyncio.sleep(0, service.grpc_port != 0 or task.done()))
    async with open_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        try:
            await eventually(lambda: is_up(channel, task))
            yield service, pb_grpc.SequencerStub(channel)  # type: ignore[no-untyped-call]
        finally:
            service.request_stop()
            await task


async def is_up(channel: grpc.aio.Channel, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()  # a failed start fails the test with its error
    return bool(await check(channel) == health_pb2.HealthCheckResponse.SERVING)


def replay(desk: Desk, txs: Sequence[bytes]) -> bytes:
    """The root a fresh state reaches by applying `txs` (as the log holds them)."""
    state = desk.state()
    for raw in txs:
        state.apply(decode_tx(raw, desk.config.domain), authenticated=True)
    return state.root()


async def submit(stub: pb_grpc.SequencerStub, tx: Tx | bytes) -> pb.SubmitTxReply:
    raw = tx if isinstance(tx, bytes) else encode_tx(tx)
    reply: pb.SubmitTxReply = await stub.SubmitTx(pb.SubmitTxRequest(tx=raw), timeout=10)
    return reply


async def refused(stub: pb_grpc.SequencerStub, tx: Tx | bytes) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await submit(stub, tx)
    return error.value.code(), error.value.details() or ""


def scenario(desk: Desk) -> list[Tx]:
    """Deposits, prices, a trade and a withdrawal: every kind a batch's public inputs list."""
    return [
        desk.deposit(ALICE, 100_000 * USD),
        desk.deposit(BOB, 100_000 * USD),
        desk.price(0, 50_000 * USD),
        desk.cross(ALICE, BOB, 0, True, 10**8, 50_000 * USD),
        desk.withdraw(ALICE, 1_000 * USD, nonce=0),
    ]


def test_submit_refuse_batch_and_read(tmp_path: Path, redis_url: str) -> None:
    env = sequencer_env(tmp_path / "seq.db", redis_url, batch_max_txs=4, batch_interval_ms=60_000)
    asyncio.run(_submit_refuse_batch_and_read(env, redis_url))


async def _submit_refuse_batch_and_read(env: dict[str, str], redis_url: str) -> None:
    desk = Desk()
    txs = [encode_tx(tx) for tx in scenario(desk)]
    async with running(env) as (service, stub):
        genesis = await stub.GetState(pb.GetStateRequest())
        assert (genesis.last_seq, genesis.next_batch_id) == (0, 0)
        assert genesis.root == desk.state().root()

        replies = [await submit(stub, raw) for raw in txs]
        assert [r.seq for r in replies] == [1, 2, 3, 4, 5]
        assert [r.tx_hash for r in replies] == [keccak(raw) for raw in txs]
        assert [r.batch_id for r in replies] == [0, 0, 0, 0, 1]  # the 4th filled batch 0
        assert not any(r.duplicate for r in replies)
        summary = await stub.GetState(pb.GetStateRequest())
        assert (summary.last_seq, summary.next_batch_id, summary.open_batch_txs) == (5, 1, 1)
        assert summary.root == replay(desk, txs)

        # Resubmitting is harmless: the original ack comes back.
        again = await submit(stub, txs[3])
        assert (again.seq, again.batch_id, again.duplicate) == (4, 0, True)

        # Refusals say why and change nothing.
        code, details = await refused(stub, txs[0][:-1])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("ENCODING: ")
        code, details = await refused(stub, b"\xff" + txs[0][1:])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("ENCODING: ")
        code, details = await refused(stub, desk.withdraw(BOB, 10**9 * USD, nonce=0))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert details.startswith("INSUFFICIENT_COLLATERAL: ")
        forged = Withdraw(desk.tick(), BOB.address, 0, USD, BOB.address, 0, 2**62)
        code, details = await refused(stub, forged.signed(ALICE, desk.config.domain))
        assert (code, details.split(":")[0]) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "BAD_SIGNATURE",
        )
        code, details = await refused(stub, Deposit(desk.tick(), 9, ALICE.address, 0, USD))
        assert details.startswith("DEPOSIT_ORDER: ")  # deposit 2 is next
        assert await stub.GetState(pb.GetStateRequest()) == summary  # no trace of any of them

        # The cut batch, as the prover and the bridge read it.
        batch = await stub.GetBatch(pb.GetBatchRequest(batch_id=0, with_txs=True))
        assert list(batch.txs) == txs[:4]
        assert (batch.first_seq, batch.last_seq, batch.status) == (1, 4, "sequenced")
        inputs = PublicInputs.decode(batch.public_inputs)
        assert (inputs.batch_id, inputs.old_root, inputs.new_root) == (
            0,
            genesis.root,
            batch.new_root,
        )
        assert len(inputs.deposits) == 2 and keccak(batch.state_diff) == inputs.diff_hash
        builder = BatchBuilder(desk.state())
        for raw in txs[:4]:
            builder.add(decode_tx(raw, desk.config.domain), authenticated=True)
        assert builder.cut().public_inputs == inputs
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetBatch(pb.GetBatchRequest(batch_id=1))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        # The account leaf and its proof, against the state root's account tree.
        state = desk.state()
        for raw in txs:
            state.apply(decode_tx(raw, desk.config.domain), authenticated=True)
        by_owner = pb.GetAccountRequest(owner=pb.OwnerKey(owner=ALICE.address, subaccount=0))
        account = await stub.GetAccount(by_owner)
        leaf, proof = state.account_proof(account.account_id)
        assert (account.account, list(account.proof), account.root) == (leaf, proof, summary.root)
        assert account.account == encode_account(state.account_of(ALICE.address, 0))
        with pytest.raises(grpc.aio.AioRpcError) as nobody:
            await stub.GetAccount(pb.GetAccountRequest(account_id=99))
        assert nobody.value.code() == grpc.StatusCode.NOT_FOUND

        # The log, paged and followed.
        page = await stub.GetTxs(pb.GetTxsRequest(from_seq=2, limit=2))
        assert ([t.seq for t in page.txs], page.last_seq) == ([2, 3], 5)
        assert [t.tx for t in page.txs] == txs[1:3] and page.txs[1].tx_hash == keccak(txs[2])
        follow = stub.StreamTxs(pb.StreamTxsRequest(from_seq=4))
        assert [(await follow.read()).seq for _ in range(2)] == [4, 5]
        batches = stub.StreamBatches(pb.StreamBatchesRequest(from_batch_id=0))
        assert (await batches.read()).batch_id == 0
        more = [encode_tx(desk.deposit(ALICE, USD)) for _ in range(3)]
        for raw in more:
            await submit(stub, raw)
        assert [(await follow.read()).tx for _ in range(3)] == more  # as they commit
        assert (await batches.read()).batch_id == 1  # 5..8 filled batch 1
        follow.cancel()
        batches.cancel()

        # The Redis feeds: every committed entry, in order, then every batch.
        client = aioredis.Redis.from_url(redis_url)

        async def fed() -> bool:
            return bool(await client.xlen(topics.TXLOG) == 8)

        await eventually(fed)
        entries: Any = await client.xrange(topics.TXLOG)
        fields = [e[1] for e in entries]
        assert [int(f[b"seq"]) for f in fields] == list(range(1, 9))
        assert [f[b"tx"] for f in fields] == txs + more
        assert [int(f[b"batch_id"]) for f in fields] == [0, 0, 0, 0, 1, 1, 1, 1]
        jobs: Any = await client.xrange(topics.BATCHES)
        assert [int(j[1][b"batch_id"]) for j in jobs] == [0, 1]
        await client.aclose()

        samples = await asyncio.to_thread(scrape, service.metrics_port)
        assert samples[("perpnet_sequencer_batch_id", ())] == 1
        assert samples[("perpnet_sequencer_last_seq", ())] == 8
        refusal = (("outcome", "INSUFFICIENT_COLLATERAL"), ("tx_type", "withdraw"))
        assert samples[("perpnet_sequencer_txs_total", refusal)] >= 1


def test_batches_are_cut_on_time_and_empty_intervals_cut_none(
    tmp_path: Path, redis_url: str
) -> None:
    env = sequencer_env(tmp_path / "seq.db", redis_url, batch_interval_ms=150)
    asyncio.run(_cut_on_time(env))


async def _cut_on_time(env: dict[str, str]) -> None:
    desk = Desk()
    async with running(env) as (_service, stub):
        await asyncio.sleep(0.4)  # empty intervals
        assert (await stub.GetState(pb.GetStateRequest())).next_batch_id == 0
        reply = await submit(stub, desk.deposit(ALICE, USD))
        batches = stub.StreamBatches(pb.StreamBatchesRequest(with_txs=True))
        batch = await asyncio.wait_for(batches.read(), 2)
        assert (batch.batch_id, batch.first_seq, batch.last_seq) == (0, 1, 1)
        assert reply.batch_id == 0 and len(batch.txs) == 1
        await asyncio.sleep(0.4)
        assert (await stub.GetState(pb.GetStateRequest())).next_batch_id == 1
        batches.cancel()


def test_recovery_gates_health_and_checks_recorded_roots(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "seq.db"
    env = sequencer_env(db, redis_url, batch_max_txs=2, batch_interval_ms=60_000)
    asyncio.run(_recovery(env, monkeypatch))
    with sqlite3.connect(db) as connection:  # corrupt one recorded root
        connection.execute("UPDATE batches SET new_root = zeroblob(32) WHERE id = 1")
    with pytest.raises(store.RecoveryError, match="batch 1: the replayed root"):
        asyncio.run(
            serve(Sequencer(SequencerSettings.from_env("sequencer", env)), handle_signals=False)
        )


async def _recovery(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    desk = Desk()
    txs = scenario(desk)
    async with running(env) as (_service, stub):
        for tx in txs:
            await submit(stub, tx)
        before = await stub.GetState(pb.GetStateRequest())
    assert (before.last_seq, before.next_batch_id, before.open_batch_txs) == (5, 2, 1)

    # A slow replay: health stays NOT_SERVING and RPCs are refused until it is done.
    release = threading.Event()
    real_replay = store.replay

    def slow_replay(*args: Any, **kwargs: Any) -> store.Recovered:
        release.wait(10)
        return real_replay(*args, **kwargs)

    monkeypatch.setattr(store, "replay", slow_replay)
    service = Sequencer(SequencerSettings.from_env("sequencer", env))
    task = asyncio.create_task(serve(service, handle_signals=False))
    await eventually(lambda: asyncio.sleep(0, service.grpc_port != 0))
    async with open_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = pb_grpc.SequencerStub(channel)  # type: ignore[no-untyped-call]
        await asyncio.sleep(0.2)
        assert await check(channel) == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as starting:
            await stub.GetState(pb.GetStateRequest(), timeout=5)
        assert starting.value.code() == grpc.StatusCode.UNAVAILABLE
        release.set()
        await eventually(lambda: is_up(channel, task))
        after = await stub.GetState(pb.GetStateRequest())
        assert after == before
        # The open batch carries on where it was: the next transaction closes it.
        reply = await submit(stub, desk.withdraw(ALICE, USD, nonce=1))
        assert (reply.seq, reply.batch_id) == (6, 2)
        assert (await stub.GetState(pb.GetStateRequest())).next_batch_id == 3
    service.request_stop()
    await task


def test_a_failed_log_write_refuses_its_group_and_rebuilds_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis is unreachable too: acknowledgements never wait for it, nor does health.
    env = sequencer_env(tmp_path / "seq.db", "redis://127.0.0.1:1/0")
    asyncio.run(_failed_write(env, monkeypatch))


async def _failed_write(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    desk = Desk()
    first, second = (encode_tx(tx) for tx in scenario(desk)[:2])
    real_write = store.write

    def failing_write(*args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(store, "write", real_write)  # fail once
        raise OSError("disk full")

    async with running(env) as (_service, stub):
        await submit(stub, first)
        before = await stub.GetState(pb.GetStateRequest())
        monkeypatch.setattr(store, "write", failing_write)
        code, details = await refused(stub, second)
        assert code == grpc.StatusCode.UNAVAILABLE and "retry" in details
        await eventually(lambda: _same_state(stub, before))  # applied in memory, then undone
        reply = await submit(stub, second)  # the retry
        assert (reply.seq, reply.duplicate) == (2, False)
        assert (await stub.GetState(pb.GetStateRequest())).root == replay(desk, [first, second])


async def _same_state(stub: pb_grpc.SequencerStub, expected: pb.StateSummary) -> bool:
    try:
        return bool(await stub.GetState(pb.GetStateRequest(), timeout=1) == expected)
    except grpc.aio.AioRpcError:
        return False


def test_a_bad_exchange_configuration_names_its_variable(tmp_path: Path) -> None:
    env = sequencer_env(tmp_path / "seq.db", "redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="PERPNET_ORACLE_SIGNERS: '0x12' is not"):
        SequencerSettings.from_env("sequencer", {**env, "PERPNET_ORACLE_SIGNERS": "0x12"})
    with pytest.raises(ConfigError, match="quorum exceeds"):
        SequencerSettings.from_env("sequencer", {**env, "PERPNET_ORACLE_QUORUM": "4"})


def test_batches_are_cut_before_their_statement_outgrows_the_l1_verifier(
    tmp_path: Path, redis_url: str
) -> None:
    """Deposits to many fresh accounts fill a statement long before batch_max_txs: each
    batch is cut while its statement (as the prover builds it) still fits."""
    limit = 20_000
    env = sequencer_env(
        tmp_path / "seq.db", redis_url, batch_max_statement_bytes=limit, batch_interval_ms=60_000
    )
    asyncio.run(_cut_by_statement(env, limit))


async def _cut_by_statement(env: dict[str, str], limit: int) -> None:
    desk = Desk()
    deposits = [encode_tx(desk.deposit(trader(f"many-{i}"), USD)) for i in range(240)]
    async with running(env) as (service, stub):
        cuts_before = statement_cuts(service)
        replies = await stub.SubmitTxs(pb.SubmitTxsRequest(txs=deposits), timeout=30)
        assert all(r.applied for r in replies.results)
        summary = await stub.GetState(pb.GetStateRequest())
        assert summary.next_batch_id >= 2 and summary.open_batch_txs < len(deposits)
        assert statement_cuts(service) - cuts_before == summary.next_batch_id
        state = desk.state()
        builder = BatchBuilder(state)
        sizes = []
        for batch_id in range(summary.next_batch_id):
            reply = await stub.GetBatch(pb.GetBatchRequest(batch_id=batch_id, with_txs=True))
            before = copy.deepcopy(state)
            for raw in reply.txs:
                builder.add(decode_tx(raw, desk.config.domain), authenticated=True)
            batch = builder.cut()
            assert batch.diff.new_root == reply.new_root
            extras = prepare_batch(before, batch).extras
            sizes.append(len(statement_bytes(batch.public_inputs, batch.diff, extras)))
        assert max(sizes) <= limit
        assert min(sizes) > limit - statement_growth_bound(3, 32)  # cut near the limit


def test_a_statement_limit_with_no_room_is_refused(tmp_path: Path) -> None:
    env = sequencer_env(tmp_path / "seq.db", "redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="BATCH_MAX_STATEMENT_BYTES=9000 leaves no room"):
        SequencerSettings.from_env(
            "sequencer", {**env, "PERPNET_SEQUENCER_BATCH_MAX_STATEMENT_BYTES": "9000"}
        )


def test_a_statement_limit_lowered_across_a_restart_cuts_the_open_batch_first(
    tmp_path: Path, redis_url: str
) -> None:
    asyncio.run(_lowered_limit(tmp_path / "seq.db", redis_url))


async def _lowered_limit(db: Path, redis_url: str) -> None:
    desk = Desk()
    deposits = [encode_tx(desk.deposit(trader(f"lower-{i}"), USD)) for i in range(120)]
    async with running(sequencer_env(db, redis_url, batch_interval_ms=60_000)) as (_, stub):
        await stub.SubmitTxs(pb.SubmitTxsRequest(txs=deposits), timeout=30)
        assert (await stub.GetState(pb.GetStateRequest())).open_batch_txs == 120
    lowered = sequencer_env(
        db, redis_url, batch_interval_ms=60_000, batch_max_statement_bytes=20_000
    )
    async with running(lowered) as (service, stub):
        cuts_before = statement_cuts(service)
        reply = await submit(stub, desk.deposit(ALICE, USD))
        assert (reply.seq, reply.batch_id) == (121, 1)  # behind a batch of the 120 before it
        batch = await stub.GetBatch(pb.GetBatchRequest(batch_id=0))
        assert (batch.first_seq, batch.last_seq) == (1, 120)
        assert statement_cuts(service) - cuts_before == 1


def statement_cuts(service: Sequencer) -> float:
    """Batches cut by statement size so far in this process (the registry is global)."""
    samples = scrape(service.metrics_port)
    return samples.get(("perpnet_sequencer_cuts_total", (("reason", "statement"),)), 0.0)
