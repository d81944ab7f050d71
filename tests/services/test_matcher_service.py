"""The matcher with a real sequencer and margin engine (in process, on free ports): orders fill
into committed Trades, the margin check refuses with a clear reason, cancel and amend, several
orders in one call, and the sequencer's SubmitTxs prefix."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from perpnet.core.encoding import decode_tx, encode_order, encode_tx
from perpnet.core.markets import USD
from perpnet.core.orders import SignedOrder
from perpnet.core.txs import Trade, Tx
from perpnet.margin.service import MarginEngine, MarginSettings
from perpnet.matcher.service import Matcher, MatcherSettings
from perpnet.proto.v1 import margin_pb2, margin_pb2_grpc, matcher_pb2, matcher_pb2_grpc
from perpnet.proto.v1 import sequencer_pb2 as spb
from perpnet.proto.v1 import sequencer_pb2_grpc as spb_grpc
from perpnet.runtime.channels import is_serving, open_channel
from perpnet.runtime.clock import now_ms
from perpnet.runtime.grpc_server import Service, serve
from perpnet.runtime.localproc import free_ports
from perpnet.sequencer.service import Sequencer
from perpnet.sequencer.settings import SequencerSettings
from perpnet.testkit import Desk, trader
from runtime.test_grpc_service import eventually

from .test_sequencer import sequencer_env, submit

BTC = 0
ONE = 10**10  # one BTC
PRICE = 50_000 * USD
MAKER, TAKER, POOR = trader("svc-maker"), trader("svc-taker"), trader("svc-poor")


def stack_env(tmp_path: Path, redis_url: str, **extra: str) -> dict[str, str]:
    """One environment for the three services: the testkit's exchange, ports known up front."""
    env = {**os.environ, **sequencer_env(tmp_path / "sequencer.db", redis_url)}
    names = ("sequencer", "margin", "matcher")
    for name, port in zip(names, free_ports(len(names)), strict=True):  # distinct
        env[f"PERPNET_{name.upper()}_GRPC_PORT"] = str(port)
    env["PERPNET_MATCHER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'matcher.db'}"
    env["PERPNET_SEQUENCER_BATCH_INTERVAL_MS"] = "200"
    env.update(extra)
    return env


@dataclass
class Stack:
    env: dict[str, str]
    desk: Desk
    sequencer: spb_grpc.SequencerStub
    matcher: matcher_pb2_grpc.MatcherStub
    margin: margin_pb2_grpc.MarginStub

    async def submit(self, tx: Tx) -> int:
        return int((await submit(self.sequencer, tx)).seq)

    def now(self) -> Desk:
        """The testkit desk, its clock caught up with the wall clock (which the services use)."""
        self.desk.now_ms = max(self.desk.now_ms, now_ms())
        return self.desk

    async def log(self) -> list[Tx]:
        reply = await self.sequencer.GetTxs(spb.GetTxsRequest(from_seq=1, limit=10_000))
        return [decode_tx(t.tx, self.desk.config.domain) for t in reply.txs]

    async def place(self, signed: SignedOrder) -> matcher_pb2.OrderResult:
        request = matcher_pb2.PlaceOrderRequest(order=wire(signed))
        result: matcher_pb2.OrderResult = await self.matcher.PlaceOrder(request, timeout=10)
        return result

    async def book(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        book = await self.matcher.GetBook(matcher_pb2.GetBookRequest(market_id=BTC, levels=1000))
        return (
            [(int(lv.price), int(lv.size)) for lv in book.bids],
            [(int(lv.price), int(lv.size)) for lv in book.asks],
        )

    async def known_to_margin(self, key: Any) -> None:
        request = margin_pb2.GetAccountRiskRequest(owner=key.address, subaccount=0)

        async def known() -> bool:
            try:
                await self.margin.GetAccountRisk(request, timeout=2)
            except grpc.aio.AioRpcError:
                return False
            return True

        await eventually(known)


def wire(signed: SignedOrder) -> matcher_pb2.SignedOrder:
    return matcher_pb2.SignedOrder(order=encode_order(signed.order), signature=signed.signature)


async def _serve(service: Service[Any], port_var: str, env: dict[str, str]) -> asyncio.Task[None]:
    task = asyncio.create_task(serve(service, handle_signals=False))
    channel = open_channel(f"127.0.0.1:{env[port_var]}")
    try:

        async def up() -> bool:
            if task.done():
                task.result()
            return await is_serving(channel)

        await eventually(up, timeout=30)
    finally:
        await channel.close(None)
    return task


@contextlib.asynccontextmanager
async def services(
    env: dict[str, str], *, matcher: bool = True
) -> AsyncIterator[list[Service[Any]]]:
    """Sequencer, margin engine and (unless told otherwise) matcher, serving in this process."""
    running: list[tuple[Service[Any], asyncio.Task[None]]] = []
    try:
        sequencer = Sequencer(SequencerSettings.from_env("sequencer", env))
        running.append((sequencer, await _serve(sequencer, "PERPNET_SEQUENCER_GRPC_PORT", env)))
        margin = MarginEngine(MarginSettings.from_env("margin", env))
        running.append((margin, await _serve(margin, "PERPNET_MARGIN_GRPC_PORT", env)))
        if matcher:
            book = Matcher(MatcherSettings.from_env("matcher", env))
            running.append((book, await _serve(book, "PERPNET_MATCHER_GRPC_PORT", env)))
        yield [service for service, _ in running]
    finally:
        for service, task in reversed(running):
            service.request_stop()
            await task


@contextlib.asynccontextmanager
async def clients(env: dict[str, str]) -> AsyncIterator[Stack]:
    channels = [
        open_channel(f"127.0.0.1:{env[f'PERPNET_{n}_GRPC_PORT']}")
        for n in ("SEQUENCER", "MATCHER", "MARGIN")
    ]
    try:
        yield Stack(
            env,
            Desk(now_ms=now_ms()),
            spb_grpc.SequencerStub(channels[0]),  # type: ignore[no-untyped-call]
            matcher_pb2_grpc.MatcherStub(channels[1]),  # type: ignore[no-untyped-call]
            margin_pb2_grpc.MarginStub(channels[2]),  # type: ignore[no-untyped-call]
        )
    finally:
        for channel in channels:
            await channel.close(None)


async def fund(stack: Stack, *keys: Any, amount: int = 100_000 * USD) -> None:
    for key in keys:
        await stack.submit(stack.now().deposit(key, amount))
    await stack.submit(stack.now().price(BTC, PRICE))
    for key in keys:
        await stack.known_to_margin(key)


@pytest.mark.parametrize("remote", ["false", "true"], ids=["replica-margin", "margin-engine"])
def test_orders_fill_into_trades_refuse_on_margin_cancel_and_amend(
    tmp_path: Path, redis_url: str, remote: str
) -> None:
    asyncio.run(_trading(stack_env(tmp_path, redis_url, PERPNET_MATCHER_MARGIN_REMOTE=remote)))


async def _trading(env: dict[str, str]) -> None:
    async with services(env), clients(env) as stack:
        await fund(stack, MAKER, TAKER)
        await fund(stack, POOR, amount=100 * USD)
        desk = stack.now()
        ask = desk.order(MAKER, BTC, False, 2 * ONE, PRICE)
        assert (await stack.place(ask)).resting == str(2 * ONE)
        bid = desk.order(TAKER, BTC, True, ONE, PRICE)
        result = await stack.place(bid)
        assert [(f.maker_hash, f.size) for f in result.fills] == [(ask.hash, str(ONE))]
        [trade] = [tx for tx in await stack.log() if isinstance(tx, Trade)]
        assert (trade.maker.hash, trade.taker.hash, trade.size) == (ask.hash, bid.hash, ONE)

        # the margin check (the replica's or the margin engine's) refuses, with its reason,
        # and the book is untouched
        greedy = stack.now().order(POOR, BTC, True, ONE, PRICE)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.place(greedy)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert (refused.value.details() or "").startswith("INSUFFICIENT_MARGIN: account")
        assert await stack.book() == ([], [(PRICE, ONE)])

        # amend (cancel-replace) and cancel
        low = stack.now().order(TAKER, BTC, True, ONE, PRICE - 100 * USD)
        await stack.place(low)
        higher = stack.now().order(TAKER, BTC, True, ONE, PRICE - 50 * USD)
        amended = await stack.matcher.AmendOrder(
            matcher_pb2.AmendOrderRequest(old_hash=low.hash, order=wire(higher))
        )
        assert [(c.order_hash, c.reason) for c in amended.cancelled] == [(low.hash, "REPLACED")]
        assert await stack.book() == ([(PRICE - 50 * USD, ONE)], [(PRICE, ONE)])
        reply = await stack.matcher.CancelOrder(
            matcher_pb2.CancelOrderRequest(order_hash=ask.hash, owner=MAKER.address)
        )
        assert (reply.cancelled.size, reply.cancelled.reason) == (str(ONE), "USER")
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stack.matcher.CancelOrder(
                matcher_pb2.CancelOrderRequest(order_hash=ask.hash, owner=MAKER.address)
            )
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        assert await stack.book() == ([(PRICE - 50 * USD, ONE)], [])


def test_place_orders_answers_each_order_on_its_own_in_the_order_given(
    tmp_path: Path, redis_url: str
) -> None:
    asyncio.run(_batch(stack_env(tmp_path, redis_url)))


async def _batch(env: dict[str, str]) -> None:
    async with services(env), clients(env) as stack:
        await fund(stack, MAKER, TAKER)
        await fund(stack, POOR, amount=100 * USD)
        desk = stack.now()
        ask = desk.order(MAKER, BTC, False, ONE, PRICE)
        forged = desk.order(MAKER, BTC, False, ONE, PRICE + USD)
        greedy = desk.order(POOR, BTC, True, ONE, PRICE - USD)
        bid = desk.order(TAKER, BTC, True, ONE, PRICE)
        orders = [wire(ask), wire(forged), wire(greedy), wire(bid)]
        orders[1].signature = bid.signature
        reply = await stack.matcher.PlaceOrders(matcher_pb2.PlaceOrdersRequest(orders=orders))
        ok, bad, poor, taken = reply.outcomes
        assert ok.result.resting == str(ONE)
        assert (bad.refused.status, bad.refused.message.split(":")[0]) == (
            "INVALID_ARGUMENT",
            "BAD_SIGNATURE",
        )
        assert (poor.refused.status, poor.refused.message.split(":")[0]) == (
            "FAILED_PRECONDITION",
            "INSUFFICIENT_MARGIN",
        )
        # matched in the order given: the bid after the ask takes it
        assert [(f.maker_hash, f.taker_hash) for f in taken.result.fills] == [(ask.hash, bid.hash)]
        assert await stack.book() == ([], [])
        too_many = matcher_pb2.PlaceOrdersRequest(orders=[wire(bid)] * 257)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.matcher.PlaceOrders(too_many)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_submit_txs_applies_a_prefix_and_reports_each(tmp_path: Path, redis_url: str) -> None:
    asyncio.run(_prefix(stack_env(tmp_path, redis_url)))


async def _prefix(env: dict[str, str]) -> None:
    async with services(env, matcher=False), clients(env) as stack:
        desk = stack.now()
        logged = desk.deposit(MAKER, USD)
        await stack.submit(logged)
        stale = desk.price(BTC, PRICE)
        fresh = desk.deposit(TAKER, USD)
        stale = replace(stale, timestamp_ms=1)  # before the log's clock: CLOCK
        after = desk.deposit(POOR, USD)
        request = spb.SubmitTxsRequest(txs=[encode_tx(t) for t in (fresh, logged, stale, after)])
        applied, duplicate, refused, skipped = (await stack.sequencer.SubmitTxs(request)).results
        assert applied.applied and not applied.duplicate
        assert duplicate.applied and duplicate.duplicate and duplicate.seq < applied.seq
        assert not refused.applied and refused.refused.startswith("CLOCK: ")
        assert not skipped.applied and not skipped.refused
        assert [type(t).__name__ for t in await stack.log()] == ["Deposit", "Deposit"]
        with pytest.raises(grpc.aio.AioRpcError) as garbage:
            await stack.sequencer.SubmitTxs(spb.SubmitTxsRequest(txs=[encode_tx(after), b"x"]))
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(await stack.log()) == 2  # nothing applied
