"""kill -9 of a real matcher process mid-stream of orders: after the restart every acknowledged
order is in the book with exactly what the sequencer's log did not fill, and nothing else is."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from pathlib import Path

import grpc
import grpc.aio

from perpnet.core.markets import USD
from perpnet.core.orders import SignedOrder, TimeInForce
from perpnet.core.txs import Trade
from perpnet.runtime.channels import is_serving, open_channel
from perpnet.runtime.localproc import LocalProcess, spawn
from perpnet.testkit import trader
from runtime.test_grpc_service import eventually

from .test_matcher_service import BTC, ONE, PRICE, TAKER, Stack, clients, fund, services, stack_env

MAKERS = [trader(f"durable-maker-{i}") for i in range(4)]
PER_MAKER = 40
KILL_AFTER_ACKS = 60
SIZE = ONE // 10


async def start_matcher(env: dict[str, str], log: Path) -> LocalProcess:
    process = spawn("matcher", [sys.executable, "-m", "perpnet.matcher"], log, env=env)
    channel = open_channel(f"127.0.0.1:{env['PERPNET_MATCHER_GRPC_PORT']}")
    try:

        async def up() -> bool:
            assert process.alive(), process.log_tail()
            return await is_serving(channel)

        await eventually(up, timeout=30)
    finally:
        await channel.close(None)
    return process


def test_kill_9_of_the_matcher_loses_no_acknowledged_order(tmp_path: Path, redis_url: str) -> None:
    asyncio.run(_kill_and_restart(tmp_path, stack_env(tmp_path, redis_url)))


async def _kill_and_restart(tmp_path: Path, env: dict[str, str]) -> None:
    async with services(env, matcher=False), clients(env) as stack:
        await fund(stack, TAKER, *MAKERS, amount=1_000_000 * USD)
        desk = stack.now()
        asks = [
            [
                desk.order(m, BTC, False, SIZE, PRICE + (100 * i + n + 1) * USD)
                for n in range(PER_MAKER)
            ]
            for i, m in enumerate(MAKERS)
        ]
        takes = [
            desk.order(TAKER, BTC, True, SIZE * 3 // 2, PRICE + 1_000 * USD, tif=TimeInForce.IOC)
            for _ in range(PER_MAKER)
        ]
        process = await start_matcher(env, tmp_path / "matcher-1.log")
        acked: list[SignedOrder] = []
        in_flight: list[SignedOrder] = []
        try:
            await _until_killed(stack, process, [*asks, takes], acked, in_flight)
        finally:
            process.stop()
        assert len(acked) >= KILL_AFTER_ACKS, process.log_tail()

        process = await start_matcher(env, tmp_path / "matcher-2.log")
        try:
            await _check_book(stack, [o for stream in asks for o in stream], acked, in_flight)
            # and it trades on: a new order fills against the recovered book
            best = (await stack.book())[1][0][0]
            taker = stack.now().order(TAKER, BTC, True, SIZE, best, tif=TimeInForce.IOC)
            assert [f.price for f in (await stack.place(taker)).fills] == [str(best)]
        finally:
            process.stop()


async def _until_killed(
    stack: Stack,
    process: LocalProcess,
    streams: list[list[SignedOrder]],
    acked: list[SignedOrder],
    in_flight: list[SignedOrder],
) -> None:
    async def run(stream: list[SignedOrder]) -> None:
        for signed in stream:
            in_flight.append(signed)
            try:
                await stack.place(signed)
            except grpc.aio.AioRpcError:
                return  # the matcher died under this request: it stays in flight
            in_flight.remove(signed)
            acked.append(signed)
            if len(acked) >= KILL_AFTER_ACKS and process.alive():
                process.signal(signal.SIGKILL)

    await asyncio.gather(*(run(stream) for stream in streams))


async def _check_book(
    stack: Stack, asks: list[SignedOrder], acked: list[SignedOrder], in_flight: list[SignedOrder]
) -> None:
    filled: Counter[bytes] = Counter()
    for tx in await stack.log():
        if isinstance(tx, Trade):
            filled[tx.maker.hash] += tx.size
    assert filled, "the stream was meant to trade before the kill"
    book = dict((await stack.book())[1])
    acked_hashes = {o.hash for o in acked}
    flying = {o.hash for o in in_flight}
    for ask in asks:
        left = ask.order.size - filled[ask.hash]
        price = ask.order.price
        if ask.hash in acked_hashes and left:
            assert book.pop(price) == left, f"acknowledged ask at {price} lost"
        elif ask.hash in flying and price in book:
            assert book.pop(price) == left
    assert book == {}, f"orders in the book that were never placed: {book}"
