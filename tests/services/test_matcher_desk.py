"""The matcher's desk against the core directly: the committed state is a core ExchangeState
applying every submitted Trade (with signature checks), the store a real SQLite database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from perpnet.core.crypto import PrivateKey
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import USD
from perpnet.core.orders import SignedOrder
from perpnet.core.txs import Trade, Tx
from perpnet.matcher.desk import FILL_REFUSED, OrderDesk, now_ms
from perpnet.matcher.store import OrderStore
from perpnet.runtime.db import Database
from perpnet.runtime.follower import RefusedError
from perpnet.testkit import Desk, trader

BTC = 0
ONE = 10**10
PRICE = 50_000 * USD
MAKER, OTHER, TAKER, POOR = (trader(n) for n in ("maker", "other", "taker", "poor"))


class Ledger:
    """What the sequencer would commit: the core applying each transaction in turn."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.state = desk.state()
        self.trades: list[Trade] = []

    async def submit(self, tx: Tx) -> int:
        try:
            self.state.apply(tx)
        except CoreError as exc:
            raise RefusedError(exc.code, str(exc)) from None
        if isinstance(tx, Trade):
            self.trades.append(tx)
        return len(self.trades)

    def apply(self, *txs: Tx) -> None:
        for tx in txs:
            self.desk.now_ms = max(self.desk.now_ms, self.state.clock_ms)
            self.state.apply(tx)


Run = Callable[[Callable[[Ledger, Database], Awaitable[None]]], None]


@pytest.fixture
def run(tmp_path: Path) -> Run:
    def runner(scenario: Callable[[Ledger, Database], Awaitable[None]]) -> None:
        async def main() -> None:
            desk = Desk(now_ms=now_ms())
            ledger = Ledger(desk)
            ledger.apply(
                desk.deposit(MAKER, 100_000 * USD),
                desk.deposit(OTHER, 100_000 * USD),
                desk.deposit(TAKER, 100_000 * USD),
                desk.deposit(POOR, 10 * USD),
                desk.price(BTC, PRICE),
            )
            async with Database(f"sqlite:///{tmp_path / 'matcher.db'}") as db:
                await db.upgrade()
                await scenario(ledger, db)

        asyncio.run(main())

    return runner


def order_desk(ledger: Ledger, db: Database) -> OrderDesk:
    store = OrderStore(db, ledger.desk.config.domain)
    return OrderDesk(ledger.state.markets, store, lambda: ledger.state, ledger.submit)


def sell(ledger: Ledger, key: PrivateKey, size: int = ONE, price: int = PRICE) -> SignedOrder:
    return ledger.desk.order(key, BTC, False, size, price)


def test_a_fill_becomes_a_committed_trade(run: Run) -> None:
    async def scenario(ledger: Ledger, db: Database) -> None:
        desk = order_desk(ledger, db)
        maker = sell(ledger, MAKER, 2 * ONE)
        assert (await desk.place(maker)).resting == 2 * ONE
        taker = ledger.desk.order(TAKER, BTC, True, ONE, PRICE)
        outcome = await desk.place(taker)
        assert [(f.size, f.price) for f in outcome.fills] == [(ONE, PRICE)]
        assert outcome.resting == 0 and not outcome.cancelled
        assert ledger.state.filled(maker.hash) == ONE and ledger.state.filled(taker.hash) == ONE
        assert desk.engine.depth(BTC, 5) == ([], [(PRICE, ONE)])

    run(scenario)


def test_a_refused_fill_cancels_the_taker_and_gives_the_maker_its_place_back(run: Run) -> None:
    async def scenario(ledger: Ledger, db: Database) -> None:
        desk = order_desk(ledger, db)
        first, second = sell(ledger, MAKER), sell(ledger, OTHER)
        await desk.place(first)
        await desk.place(second)
        broke = ledger.desk.order(POOR, BTC, True, 2 * ONE, PRICE)  # 10 USD for 2 BTC
        outcome = await desk.place(broke)
        assert outcome.fills == [] and ledger.trades == []
        assert "INSUFFICIENT_MARGIN" in outcome.refusal
        assert [(c.order.hash, c.size, c.reason) for c in outcome.cancelled] == [
            (broke.hash, 2 * ONE, FILL_REFUSED)
        ]
        assert desk.engine.depth(BTC, 5) == ([], [(PRICE, 2 * ONE)])
        # time priority is intact: the first maker still fills first
        taker = ledger.desk.order(TAKER, BTC, True, ONE, PRICE)
        assert [f.maker.hash for f in (await desk.place(taker)).fills] == [first.hash]

    run(scenario)


def test_recovery_rebuilds_the_book_from_rows_and_committed_fills(run: Run) -> None:
    async def scenario(ledger: Ledger, db: Database) -> None:
        desk = order_desk(ledger, db)
        kept, cancelled, partly = (sell(ledger, k) for k in (MAKER, OTHER, MAKER))
        for signed in (kept, cancelled, partly):
            await desk.place(signed)
        await desk.cancel(cancelled.hash, OTHER.address)
        bid = ledger.desk.order(OTHER, BTC, True, ONE, PRICE - USD)
        await desk.place(bid)
        # a fill the sequencer committed but whose rows were never written (a kill -9
        # between SubmitTx and the database write): the rebuilt book must not offer it again
        taker = ledger.desk.order(TAKER, BTC, True, ONE // 2, PRICE)
        ledger.apply(ledger.desk.trade(kept, taker, ONE // 2))

        reborn = order_desk(ledger, db)
        assert await reborn.recover() == 3
        assert reborn.engine.depth(BTC, 5) == (
            [(PRICE - USD, ONE)],
            [(PRICE, ONE // 2 + ONE)],
        )
        with pytest.raises(CoreError) as replay:
            await reborn.place(cancelled)
        assert replay.value.code == ErrorCode.REPLAY
        buyer = ledger.desk.order(TAKER, BTC, True, ONE, PRICE)
        fills = (await reborn.place(buyer)).fills
        assert [(f.maker.hash, f.size) for f in fills] == [
            (kept.hash, ONE // 2),
            (partly.hash, ONE // 2),
        ]

    run(scenario)


def test_amend_in_place_keeps_priority_across_a_restart(run: Run) -> None:
    async def scenario(ledger: Ledger, db: Database) -> None:
        desk = order_desk(ledger, db)
        first, second = sell(ledger, MAKER, 2 * ONE), sell(ledger, OTHER)
        await desk.place(first)
        await desk.place(second)
        smaller = sell(ledger, MAKER, ONE)
        outcome = await desk.amend(first.hash, smaller)
        assert [c.reason for c in outcome.cancelled] == ["REPLACED"] and outcome.resting == ONE
        reborn = order_desk(ledger, db)
        assert await reborn.recover() == 2
        taker = ledger.desk.order(TAKER, BTC, True, ONE, PRICE)
        assert [f.maker.hash for f in (await reborn.place(taker)).fills] == [smaller.hash]

    run(scenario)
