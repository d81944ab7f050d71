"""Stops and take-profits: parked outside the book, fired by oracle ticks in placement order."""

from __future__ import annotations

import pytest
from test_matching_kit import LOT, MARKETS, addr, cancels, fills, lots_at, order, reject

from perpnet.core.errors import ErrorCode
from perpnet.core.markets import USD
from perpnet.core.matching import CancelReason, MatchingEngine, OpenOrder
from perpnet.core.orders import OrderKind, SignedOrder, TimeInForce

T = 1_000
IOC = TimeInForce.IOC
STOP_MARKET, STOP_LIMIT = OrderKind.STOP_MARKET, OrderKind.STOP_LIMIT
TP_MARKET, TP_LIMIT = OrderKind.TAKE_PROFIT_MARKET, OrderKind.TAKE_PROFIT_LIMIT


@pytest.fixture
def engine() -> MatchingEngine:
    book = MatchingEngine(MARKETS)
    for price in (95, 96, 97, 98, 99):
        book.place(order("mm", "buy", 5, price), T)
    for price in (101, 102, 103, 104, 105):
        book.place(order("mm", "sell", 5, price), T)
    return book


def tick(engine: MatchingEngine, dollars: int) -> list[SignedOrder]:
    return [r.order for r in engine.on_oracle_price(0, dollars * USD, T)]


# (kind, side, trigger, price that must not fire, price that fires)
CASES = [
    (STOP_MARKET, "sell", 97, 98, 97),  # stop-loss of a long: fires as the price falls
    (STOP_MARKET, "buy", 103, 102, 103),  # stop-loss of a short: fires as it rises
    (TP_MARKET, "sell", 103, 102, 104),  # take-profit of a long: fires as it rises
    (TP_MARKET, "buy", 97, 98, 96),  # take-profit of a short: fires as it falls
]


@pytest.mark.parametrize(("kind", "side", "trigger", "calm", "fire"), CASES)
def test_market_conditionals_fire_in_the_right_direction(
    engine: MatchingEngine, kind: OrderKind, side: str, trigger: int, calm: int, fire: int
) -> None:
    worst = 90 if side == "sell" else 110
    conditional = order("t", side, 7, worst, kind=kind, tif=IOC, trigger=trigger)
    placed = engine.place(conditional, T)
    assert placed.pending and placed.resting == 0 and placed.fills == []
    before = lots_at(engine)
    assert engine.on_oracle_price(0, calm * USD, T) == []
    assert lots_at(engine) == before
    [result] = engine.on_oracle_price(0, fire * USD, T)
    # 7 lots as IOC at the worst price: 5 at the touch, 2 at the next level
    near, far = (99, 98) if side == "sell" else (101, 102)
    assert [(lots, px) for _, lots, px in fills(result)] == [(5, near), (2, far)]
    assert engine.resting(conditional.hash) is None
    assert tick(engine, fire) == []  # fired once only


def test_a_stop_limit_rests_as_a_limit_once_fired(engine: MatchingEngine) -> None:
    stop = order("t", "buy", 7, 101, kind=STOP_LIMIT, trigger=103)
    engine.place(stop, T)
    assert lots_at(engine)[0][0] == (99, 5)  # not in the book while parked
    [result] = engine.on_oracle_price(0, 104 * USD, T)
    assert result.filled == 5 * LOT and result.resting == 2 * LOT
    assert lots_at(engine)[0][0] == (101, 2)
    assert engine.resting(stop.hash) == OpenOrder(stop, 2 * LOT, False)


def test_take_profit_limit_fires_for_the_position(engine: MatchingEngine) -> None:
    tp = order("t", "sell", 3, 100, kind=TP_LIMIT, trigger=100)
    engine.place(tp, T)
    assert tick(engine, 99) == []
    [result] = engine.on_oracle_price(0, 100 * USD, T)
    assert result.fills == [] and result.resting == 3 * LOT
    assert lots_at(engine)[1][0] == (100, 3)


def test_triggers_already_met_at_placement_wait_for_a_tick(engine: MatchingEngine) -> None:
    stop = order("t", "sell", 1, 90, kind=STOP_MARKET, tif=IOC, trigger=110)
    assert engine.place(stop, T).pending
    assert engine.resting(stop.hash) == OpenOrder(stop, LOT, True)
    assert tick(engine, 100) == [stop]


def test_fired_orders_enter_in_placement_order(engine: MatchingEngine) -> None:
    late_trigger = order("a", "sell", 3, 90, kind=STOP_MARKET, tif=IOC, trigger=99)
    early_trigger = order("b", "sell", 3, 90, kind=STOP_MARKET, tif=IOC, trigger=98)
    not_yet = order("c", "sell", 3, 90, kind=STOP_MARKET, tif=IOC, trigger=90)
    other_way = order("d", "buy", 3, 110, kind=STOP_MARKET, tif=IOC, trigger=101)
    for o in (late_trigger, early_trigger, not_yet, other_way):
        engine.place(o, T)
    results = engine.on_oracle_price(0, 97 * USD, T)
    assert [r.order for r in results] == [late_trigger, early_trigger]
    # the first placed takes the best bids
    assert [(lots, px) for _, lots, px in fills(results[0])] == [(3, 99)]
    assert [(lots, px) for _, lots, px in fills(results[1])] == [(2, 99), (1, 98)]
    assert [o.order for o in engine.open_orders(addr("c"))] == [not_yet]


def test_conditionals_of_other_markets_are_untouched(engine: MatchingEngine) -> None:
    eth_stop = order("t", "sell", 1, 1, kind=STOP_MARKET, tif=IOC, trigger=2_000, market_id=1)
    engine.place(eth_stop, T)
    assert tick(engine, 1) == []
    reject(engine, ErrorCode.UNKNOWN_MARKET, lambda: engine.on_oracle_price(7, USD, T))
    assert engine.on_oracle_price(1, 1_999 * USD, T)[0].order == eth_stop


def test_a_fired_fok_that_cannot_fill_is_cancelled(engine: MatchingEngine) -> None:
    big = order("t", "buy", 50, 101, kind=STOP_MARKET, tif=TimeInForce.FOK, trigger=101)
    engine.place(big, T)
    before = lots_at(engine)
    [result] = engine.on_oracle_price(0, 101 * USD, T)
    assert cancels(result) == [(big, 50, CancelReason.FOK_UNFILLED)]
    assert lots_at(engine) == before and engine.resting(big.hash) is None


def test_a_fired_post_only_that_would_take_is_cancelled(engine: MatchingEngine) -> None:
    post = order("t", "buy", 1, 102, kind=STOP_LIMIT, tif=TimeInForce.POST_ONLY, trigger=101)
    engine.place(post, T)
    [result] = engine.on_oracle_price(0, 101 * USD, T)
    assert cancels(result) == [(post, 1, CancelReason.POST_ONLY)]


def test_reduce_only_stop_uses_the_position_at_fire_time(engine: MatchingEngine) -> None:
    stop = order("t", "sell", 4, 90, kind=STOP_MARKET, tif=IOC, trigger=97, reduce_only=True)
    reject(engine, ErrorCode.REDUCE_ONLY, lambda: engine.place(stop, T, position=0))
    engine.place(stop, T, position=4 * LOT)
    seen: list[tuple[bytes, int]] = []

    def position_of(owner: bytes, subaccount: int) -> int:
        seen.append((owner, subaccount))
        return 1 * LOT  # the position shrank since placement

    [result] = engine.on_oracle_price(0, 97 * USD, T, position_of=position_of)
    assert seen == [(addr("t"), 0)]
    assert result.filled == 1 * LOT
    assert cancels(result) == [(stop, 3, CancelReason.REDUCE_ONLY)]


def test_reduce_only_stop_without_a_position_callback_uses_the_placement_one(
    engine: MatchingEngine,
) -> None:
    stop = order("t", "sell", 4, 90, kind=STOP_MARKET, tif=IOC, trigger=97, reduce_only=True)
    engine.place(stop, T, position=2 * LOT)
    [result] = engine.on_oracle_price(0, 96 * USD, T)
    assert result.filled == 2 * LOT


def test_a_fired_reduce_only_with_nothing_to_reduce_is_cancelled(engine: MatchingEngine) -> None:
    stop = order("t", "sell", 4, 90, kind=STOP_MARKET, tif=IOC, trigger=97, reduce_only=True)
    engine.place(stop, T, position=2 * LOT)
    [result] = engine.on_oracle_price(0, 96 * USD, T, position_of=lambda owner, sub: 0)
    assert cancels(result) == [(stop, 4, CancelReason.REDUCE_ONLY)]


def test_a_conditional_past_its_expiry_does_not_fire(engine: MatchingEngine) -> None:
    stop = order("t", "sell", 1, 90, kind=STOP_MARKET, tif=IOC, trigger=97, expiry_ms=T + 5)
    engine.place(stop, T)
    [result] = engine.on_oracle_price(0, 96 * USD, T + 6)
    assert cancels(result) == [(stop, 1, CancelReason.EXPIRED)]


def test_pending_conditionals_can_be_cancelled_and_amended(engine: MatchingEngine) -> None:
    stop = order("t", "sell", 1, 90, kind=STOP_MARKET, tif=IOC, trigger=97)
    engine.place(stop, T)
    reject(engine, ErrorCode.NOT_OWNER, lambda: engine.cancel(stop.hash, addr("x"), T))
    moved = order("t", "sell", 1, 90, kind=STOP_MARKET, tif=IOC, trigger=95)
    result = engine.amend(stop.hash, moved, T)
    assert result.pending and cancels(result) == [(stop, 1, CancelReason.REPLACED)]
    assert tick(engine, 96) == []
    assert engine.cancel(moved.hash, addr("t"), T).reason == CancelReason.USER
    assert tick(engine, 90) == []


def test_conditional_needs_a_valid_trigger(engine: MatchingEngine) -> None:
    no_trigger = order("t", "sell", 1, 90, kind=STOP_MARKET, tif=IOC)
    reject(engine, ErrorCode.INVALID_FIELD, lambda: engine.place(no_trigger, T))
