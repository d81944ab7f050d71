"""Submissions stamped by their submitter, to a real sequencer: stamped again when another
submitter's later stamp got in first, and only then. The gateway (gRPC backend) has its own
loop, since its refusals reach clients; the bridge, the margin engine and the matcher use
`submit_stamped`, and the bridge's poll loop handles a sequencer that does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from perpnet.bridge.service import BridgeService
from perpnet.core.encoding import decode_tx
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import USD
from perpnet.core.txs import Tx, Withdraw
from perpnet.gateway.grpc_backend import GrpcSequencer
from perpnet.proto.v1 import sequencer_pb2 as pb
from perpnet.runtime.channels import open_channel
from perpnet.runtime.clock import now_ms
from perpnet.runtime.db import Database
from perpnet.runtime.follower import MAX_RESTAMPS, RefusedError, UnreachableError, submit_stamped
from perpnet.runtime.sequencer_client import SequencerClient
from perpnet.testkit import Desk, trader
from services.test_sequencer import running, sequencer_env

ALICE, BOB = trader("alice"), trader("bob")


Submit = Callable[[Tx], Awaitable[int]]


@pytest.mark.parametrize("submitter", ["gateway", "submit_stamped"])
def test_a_withdrawal_stamped_just_behind_the_log_is_restamped_and_nothing_else(
    submitter: str, tmp_path: Path, redis_url: str
) -> None:
    asyncio.run(_restamped(submitter, sequencer_env(tmp_path / "sequencer.db", redis_url)))


async def _restamped(submitter: str, env: dict[str, str]) -> None:
    desk = Desk(now_ms=now_ms())
    async with (
        running(env) as (service, stub),
        _counted(submitter, service.grpc_port, desk) as (submit, sent, refusal),
    ):
        await submit(desk.deposit(ALICE, USD))
        stamp = now_ms()
        # another submitter (the matcher) stamped 3 ms later and got in first
        await submit(replace(desk.deposit(BOB, USD), timestamp_ms=stamp + 3))
        behind = replace(desk.withdraw(ALICE, USD // 2, nonce=0), timestamp_ms=stamp)
        sent.clear()
        seq = await submit(behind)
        assert 2 <= len(sent) <= 4 and sent == sorted(set(sent))  # a later stamp each time
        logged = await stub.GetTxs(pb.GetTxsRequest(from_seq=seq, limit=1))
        tx = decode_tx(logged.txs[0].tx, desk.config.domain)
        assert isinstance(tx, Withdraw) and tx.timestamp_ms >= stamp + 3
        assert replace(tx, timestamp_ms=stamp) == behind  # only the stamp moved

        # other refusals come back as they are, and so does a clock far ahead
        sent.clear()
        with pytest.raises(refusal) as reused:  # stamped ahead of the log: no CLOCK first
            await submit(replace(desk.withdraw(ALICE, 1, nonce=0), timestamp_ms=now_ms() + 5))
        assert reused.value.code == ErrorCode.BAD_NONCE and len(sent) == 1  # not retried
        await submit(replace(desk.deposit(BOB, USD), timestamp_ms=stamp + 60_000))
        sent.clear()
        with pytest.raises(refusal) as late:
            await submit(desk.withdraw(ALICE, 1, nonce=1))
        assert late.value.code == ErrorCode.CLOCK and len(sent) == MAX_RESTAMPS  # bounded
        last = await stub.GetTxs(pb.GetTxsRequest(from_seq=seq + 1, limit=10))
        assert len(last.txs) == 1  # the far-ahead deposit only: nothing refused was logged


@contextlib.asynccontextmanager
async def _counted(
    submitter: str, port: int, desk: Desk
) -> AsyncIterator[tuple[Submit, list[int], type[Exception]]]:
    """A submitter, the stamps of every attempt it sends, and what it raises on a refusal:
    the gateway's gRPC backend (CoreError, as clients get it) or `submit_stamped`."""
    sent: list[int] = []
    if submitter == "gateway":
        async with open_channel(f"127.0.0.1:{port}") as channel:
            gateway = GrpcSequencer(channel, desk.config.markets, timeout=10)
            once = gateway._submit_once

            async def counted_once(tx: Tx) -> tuple[int, bytes]:
                sent.append(tx.timestamp_ms)
                return await once(tx)

            async def through_gateway(tx: Tx) -> int:
                return (await gateway.submit(tx))[0]

            gateway._submit_once = counted_once  # type: ignore[method-assign]
            yield through_gateway, sent, CoreError
        return
    client = SequencerClient(f"127.0.0.1:{port}")
    raw = client.submit

    async def counted(encoded: bytes) -> Any:
        sent.append(decode_tx(encoded, desk.config.domain).timestamp_ms)
        return await raw(encoded)

    client.submit = counted  # type: ignore[method-assign]
    try:
        yield partial(submit_stamped, client), sent, RefusedError
    finally:
        await client.close()


def test_the_bridge_credits_a_deposit_behind_the_log_at_once(
    tmp_path: Path, redis_url: str
) -> None:
    asyncio.run(_bridge_credits(tmp_path, sequencer_env(tmp_path / "sequencer.db", redis_url)))


async def _bridge_credits(tmp_path: Path, env: dict[str, str]) -> None:
    desk = Desk(now_ms=now_ms())
    async with (
        running(env) as (service, _stub),
        Database(f"sqlite:///{tmp_path / 'bridge.db'}") as db,
    ):
        await db.upgrade()
        client = SequencerClient(f"127.0.0.1:{service.grpc_port}")
        # the bridge's own _submit, with a real sequencer client and database
        bridge = SimpleNamespace(sequencer=client, db=db, log=logging.getLogger("perpnet.bridge"))
        try:
            stamp = now_ms()
            await submit_stamped(client, replace(desk.deposit(BOB, USD), timestamp_ms=stamp + 3))
            behind = replace(desk.deposit(ALICE, USD), timestamp_ms=stamp)
            assert await BridgeService._submit(bridge, behind, "deposit", behind.deposit_id)  # type: ignore[arg-type]
            assert (await client.counters()).next_deposit_id == 2  # credited, not a poll later
        finally:
            await client.close()
        port = service.grpc_port
    # the sequencer is gone: the poll loop's error (counted, logged once), not a refusal
    gone = SequencerClient(f"127.0.0.1:{port}", timeout_s=1.0, attempts=1)
    bridge.sequencer = gone
    try:
        with pytest.raises(UnreachableError) as unreachable:
            await BridgeService._submit(bridge, desk.deposit(ALICE, USD), "deposit", 2)  # type: ignore[arg-type]
        assert unreachable.value.code == "UNAVAILABLE"
    finally:
        await gone.close()
