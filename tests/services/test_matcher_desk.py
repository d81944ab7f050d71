"""The matcher's desk against the core directly: the committed state is a core ExchangeState
applying every submitted Trade (with signature checks), the store a real SQLite database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from perpnet.core.crypto import PrivateKey
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import USD
from perpnet.core.orders import SignedOrder, TimeInForce
from perpnet.core.txs import Trade, Tx
from perpnet.margin.risk import check_order
from perpnet.matcher.desk import FILL_REFUSED, OrderDesk, Outcome, Submitted, one_by_one
from perpnet.matcher.store import OrderRow, OrderStore
from perpnet.runtime.clock import now_ms
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


class CountingStore(OrderStore):
    writes = 0

    async def write(self, rows: Sequence[OrderRow], now_ms: int) -> None:
        self.writes += 1
        await super().write(rows, now_ms)


class Counted:
    """A desk over the ledger that counts SubmitTxs calls (their sizes) and row writes."""

    def __init__(self, ledger: Ledger, db: Database) -> None:
        self.submissions: list[int] = []
        self.store = CountingStore(db, ledger.desk.config.domain)
        many = one_by_one(ledger.submit)

        async def counted_many(txs: Sequence[Tx]) -> list[Submitted]:
            self.submissions.append(len(txs))
            return await many(txs)

        self.desk = OrderDesk(
            ledger.state.markets, self.store, lambda: ledger.state, ledger.submit,
            submit_many=counted_many,
        )  # fmt: skip

    @property
    def writes(self) -> int:
        return self.store.writes


def test_orders_placed_together_match_in_arrival_order_in_one_submission_and_write(
    run: Run,
) -> None:
    async def scenario(ledger: Ledger, db: Database) -> None:
        counted = Counted(ledger, db)
        desk = counted.desk
        first, second = sell(ledger, MAKER), sell(ledger, OTHER)
        await asyncio.gather(desk.place(first), desk.place(second))
        takers = [ledger.desk.order(TAKER, BTC, True, ONE, PRICE) for _ in range(2)]
        writes = counted.writes
        outcomes = await asyncio.gather(*(desk.place(t) for t in takers))
        assert [[f.maker.hash for f in o.fills] for o in outcomes] == [[first.hash], [second.hash]]
        assert counted.submissions == [2] and counted.writes == writes + 1
        assert [(t.maker.hash, t.taker.hash) for t in ledger.trades] == [
            (first.hash, takers[0].hash),
            (second.hash, takers[1].hash),
        ]
        assert desk.engine.depth(BTC, 5) == ([], [])

    run(scenario)


def test_a_refused_fill_in_a_micro_batch_ends_as_if_the_orders_came_one_by_one(
    run: Run,
) -> None:
    async def scenario(ledger: Ledger, db: Database) -> None:
        counted = Counted(ledger, db)
        desk = counted.desk
        first, second = sell(ledger, MAKER), sell(ledger, OTHER)
        await asyncio.gather(desk.place(first), desk.place(second))
        taker = ledger.desk.order(TAKER, BTC, True, ONE, PRICE)
        broke = ledger.desk.order(POOR, BTC, True, 2 * ONE, PRICE)  # 10 USD for 2 BTC
        later = ledger.desk.order(TAKER, BTC, True, ONE, PRICE)
        got = await asyncio.gather(desk.place(taker), desk.place(broke), desk.place(later))
        assert [[f.maker.hash for f in o.fills] for o in got] == [[first.hash], [], [second.hash]]
        assert [(c.order.hash, c.size, c.reason) for c in got[1].cancelled] == [
            (broke.hash, 2 * ONE, FILL_REFUSED)
        ]
        # one SubmitTxs (its 2nd fill refused), then only the refused one sent again
        assert counted.submissions == [2]
        assert [(t.maker.hash, t.taker.hash) for t in ledger.trades] == [
            (first.hash, taker.hash),
            (second.hash, later.hash),
        ]
        assert desk.engine.depth(BTC, 5) == ([], [])
        # and the rows say the same: the book rebuilt from them is the live one
        resting = ledger.desk.order(MAKER, BTC, False, ONE, PRICE + USD)
        await desk.place(resting)
        reborn = order_desk(ledger, db)
        assert await reborn.recover() == 1
        assert reborn.engine.snapshot().orders == desk.engine.snapshot().orders

    run(scenario)


def checked_desk(ledger: Ledger, db: Database) -> OrderDesk:
    """A desk running the matcher's pre-trade margin check on the ledger's state."""
    desk: OrderDesk

    async def check(signed: SignedOrder, exclude: bytes) -> None:
        verdict = check_order(ledger.state, signed.order, desk.open_orders(signed.order, exclude))
        if not verdict.ok:
            raise CoreError(ErrorCode(verdict.reason), verdict.message)

    store = OrderStore(db, ledger.desk.config.domain)
    desk = OrderDesk(ledger.state.markets, store, lambda: ledger.state, ledger.submit, check=check)
    return desk


def test_orders_placed_together_are_margin_checked_as_if_placed_one_by_one(run: Run) -> None:
    async def scenario(ledger: Ledger, db: Database) -> None:
        def bids(price: int) -> list[SignedOrder]:
            return [ledger.desk.order(OTHER, BTC, True, 5 * ONE, price) for _ in range(20)]

        async def outcomes(desk: OrderDesk, orders: list[SignedOrder]) -> list[str]:
            got = await asyncio.gather(*(desk.place(o) for o in orders), return_exceptions=True)
            return [g.code.value if isinstance(g, CoreError) else "ok" for g in got]

        one_by_one_desk = checked_desk(ledger, db)
        sequential = [(await outcomes(one_by_one_desk, [o]))[0] for o in bids(PRICE - 2 * USD)]
        together = await outcomes(checked_desk(ledger, db), bids(PRICE - 3 * USD))
        assert 0 < sequential.count("ok") < len(sequential)
        assert together == sequential
        assert set(together) == {"ok", ErrorCode.INSUFFICIENT_MARGIN.value}

    run(scenario)


class FailingStore(OrderStore):
    fail = False

    async def write(self, rows: Sequence[OrderRow], now_ms: int) -> None:
        if self.fail:
            raise OSError("disk full")
        await super().write(rows, now_ms)


def test_a_failed_row_write_leaves_no_order_of_the_batch_live(run: Run) -> None:
    async def scenario(ledger: Ledger, db: Database) -> None:
        store = FailingStore(db, ledger.desk.config.domain)
        desk = OrderDesk(ledger.state.markets, store, lambda: ledger.state, ledger.submit)
        maker = sell(ledger, MAKER, 2 * ONE)
        await desk.place(maker)
        store.fail = True
        taker = ledger.desk.order(TAKER, BTC, True, ONE, PRICE)
        bid = ledger.desk.order(TAKER, BTC, True, ONE, PRICE - USD)
        got = await asyncio.gather(desk.place(taker), desk.place(bid), return_exceptions=True)
        assert [type(g) for g in got] == [OSError, OSError]
        assert ledger.state.filled(maker.hash) == ONE  # committed before the write failed
        # the bid is gone; the maker keeps only what the committed fill left
        assert desk.engine.depth(BTC, 5) == ([], [(PRICE, ONE)])
        store.fail = False
        buyer = ledger.desk.order(TAKER, BTC, True, 2 * ONE, PRICE, tif=TimeInForce.IOC)
        fills = (await desk.place(buyer)).fills
        assert [(f.maker.hash, f.size) for f in fills] == [(maker.hash, ONE)]

    run(scenario)


def test_reduce_only_orders_in_one_batch_see_each_others_fills(run: Run) -> None:
    async def scenario(ledger: Ledger, db: Database) -> None:
        counted = Counted(ledger, db)
        desk = counted.desk
        await desk.place(sell(ledger, MAKER, 3 * ONE))
        await desk.place(ledger.desk.order(TAKER, BTC, True, ONE, PRICE))  # TAKER: long 1 BTC
        await desk.place(ledger.desk.order(OTHER, BTC, True, 2 * ONE, PRICE - USD))

        def close() -> SignedOrder:
            return ledger.desk.order(
                TAKER, BTC, False, ONE, PRICE - USD, tif=TimeInForce.IOC, reduce_only=True
            )

        # as one at a time: the first closes the long, the second is refused up front
        first, second = await asyncio.gather(
            desk.place(close()), desk.place(close()), return_exceptions=True
        )
        assert isinstance(first, Outcome) and not first.refusal
        assert [f.size for f in first.fills] == [ONE]
        assert isinstance(second, CoreError) and second.code == ErrorCode.REDUCE_ONLY
        assert counted.submissions[-1] == 1  # no oversized fill was sent and refused
        assert desk.engine.depth(BTC, 5)[0] == [(PRICE - USD, ONE)]

    run(scenario)
