"""kill -9 of a real sequencer process mid-stream loses no acknowledged transaction; the restart
recovers by itself (from the log alone, or from a state checkpoint and the log after it) to the
root of a replay of its log, and republishes what Redis missed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import redis.asyncio as aioredis

from perpnet.core.crypto import keccak
from perpnet.core.encoding import decode_tx, encode_tx
from perpnet.core.markets import USD
from perpnet.core.txs import Withdraw
from perpnet.proto.v1 import sequencer_pb2 as pb
from perpnet.proto.v1 import sequencer_pb2_grpc as pb_grpc
from perpnet.runtime import topics
from perpnet.runtime.channels import is_serving, open_channel
from perpnet.runtime.localproc import LocalProcess, free_port, spawn, wait_for_port
from perpnet.testkit import Desk, trader
from runtime.test_grpc_service import eventually

from .test_sequencer import sequencer_env, submit

TRADERS = [trader(f"durable-{i}") for i in range(8)]
PER_TRADER = 400
KILL_AFTER_ACKS = 600


def start(env: dict[str, str], log: Path) -> tuple[LocalProcess, str]:
    port = free_port()
    argv = [sys.executable, "-m", "perpnet.sequencer"]
    process = spawn("sequencer", argv, log, env={**env, "PERPNET_SEQUENCER_GRPC_PORT": str(port)})
    wait_for_port(process, "127.0.0.1", port, timeout=30)
    return process, f"127.0.0.1:{port}"


@pytest.mark.parametrize("checkpoint_batches", [0, 3], ids=["log-only", "checkpoints"])
def test_kill_9_mid_stream_loses_no_acknowledged_tx(
    tmp_path: Path, redis_url: str, checkpoint_batches: int
) -> None:
    settings = {"batch_max_txs": 64, "batch_interval_ms": 200}
    checkpoints = {"checkpoint_batches": checkpoint_batches, "checkpoint_txs": 0}
    env = {
        **os.environ,
        **sequencer_env(tmp_path / "seq.db", redis_url, **settings, **checkpoints),
    }
    desk = Desk()
    setup = [encode_tx(desk.deposit(key, 1_000 * USD)) for key in TRADERS]
    at = desk.tick()  # one timestamp for the concurrent streams: any interleaving is in order
    streams = [
        [
            encode_tx(
                Withdraw(at, k.address, 0, USD, k.address, n, 2**62).signed(k, desk.config.domain)
            )
            for n in range(PER_TRADER)
        ]
        for k in TRADERS
    ]
    process, address = start(env, tmp_path / "first.log")
    try:
        acked, in_flight, snapshots = asyncio.run(_until_killed(process, address, setup, streams))
    finally:
        process.stop()
    assert len(acked) >= KILL_AFTER_ACKS, process.log_tail()

    process, address = start(env, tmp_path / "second.log")
    try:
        asyncio.run(_after_restart(address, redis_url, desk, acked, in_flight, snapshots))
    finally:
        process.stop()
    recovered = [
        line
        for line in map(json.loads, (tmp_path / "second.log").read_text().splitlines())
        if line.get("msg") == "recovered"
    ]
    assert len(recovered) == 1
    # with checkpoints on, the restart replayed only the log after the newest one
    assert (recovered[0]["checkpoint"] is not None) == (checkpoint_batches > 0)
    assert (recovered[0]["replayed"] < recovered[0]["last_seq"]) == (checkpoint_batches > 0)


async def _until_killed(
    process: LocalProcess, address: str, setup: list[bytes], streams: list[list[bytes]]
) -> tuple[dict[bytes, int], list[bytes], list[tuple[int, bytes]]]:
    acked: dict[bytes, int] = {}  # tx hash -> seq, for every acknowledgement received
    in_flight: list[bytes] = []  # what each stream had sent when the process died
    snapshots: list[tuple[int, bytes]] = []  # (last_seq, root) as GetState said
    async with open_channel(address) as channel:
        await eventually(lambda: is_serving(channel), timeout=30)
        stub = pb_grpc.SequencerStub(channel)  # type: ignore[no-untyped-call]
        for raw in setup:
            acked[keccak(raw)] = (await submit(stub, raw)).seq

        async def stream(txs: list[bytes]) -> None:
            for raw in txs:
                try:
                    acked[keccak(raw)] = (await submit(stub, raw)).seq
                except grpc.aio.AioRpcError:
                    in_flight.append(raw)
                    return

        async def watch_and_kill() -> None:
            while len(acked) < KILL_AFTER_ACKS:
                try:
                    summary = await stub.GetState(pb.GetStateRequest(), timeout=5)
                except grpc.aio.AioRpcError:
                    return
                snapshots.append((summary.last_seq, summary.root))
                await asyncio.sleep(0.02)
            process.signal(signal.SIGKILL)

        started = time.monotonic()
        await asyncio.gather(watch_and_kill(), *(stream(txs) for txs in streams))
        assert time.monotonic() - started < 30
    assert process.popen.wait(10) == -signal.SIGKILL
    return acked, in_flight, snapshots


async def _after_restart(
    address: str,
    redis_url: str,
    desk: Desk,
    acked: dict[bytes, int],
    in_flight: list[bytes],
    snapshots: list[tuple[int, bytes]],
) -> None:
    async with open_channel(address) as channel:
        await eventually(lambda: is_serving(channel), timeout=30)
        stub = pb_grpc.SequencerStub(channel)  # type: ignore[no-untyped-call]
        summary = await stub.GetState(pb.GetStateRequest())
        log: list[pb.LoggedTx] = []
        while True:
            page = await stub.GetTxs(pb.GetTxsRequest(from_seq=len(log) + 1, limit=500))
            if not page.txs:
                break
            log.extend(page.txs)

        # Every acknowledged transaction is in the log, at the seq it was acknowledged with.
        assert [t.seq for t in log] == list(range(1, summary.last_seq + 1))
        by_hash = {t.tx_hash: t.seq for t in log}
        assert all(by_hash.get(h) == seq for h, seq in acked.items())
        assert len(log) - len(acked) <= len(in_flight)  # at most those in flight beside

        # The recovered root is that of a replay of the log; so were the roots served before.
        state = desk.state()
        roots = {0: state.root()}
        for entry in log:
            state.apply(decode_tx(entry.tx, desk.config.domain), authenticated=True)
            roots[entry.seq] = state.root()
        assert summary.root == roots[summary.last_seq]
        assert snapshots and all(roots[seq] == root for seq, root in snapshots)

        # What was in flight at the kill: committed ones come back as duplicates, others apply.
        for raw in in_flight:
            reply = await submit(stub, raw)
            assert reply.duplicate == (keccak(raw) in by_hash)
            assert reply.seq == by_hash.get(keccak(raw), reply.seq)

        # Redis gets every entry, those committed just before the kill included.
        last = (await stub.GetState(pb.GetStateRequest())).last_seq
        client = aioredis.Redis.from_url(redis_url)

        async def all_published() -> bool:
            entries: Any = await client.xrange(topics.TXLOG)
            seqs = {int(f[b"seq"]) for _id, f in entries}
            return seqs == set(range(1, last + 1))

        await eventually(all_published, timeout=10)
        await client.aclose()
