"""Matching scenarios with hand-computed outcomes: priority, order types, STP, cancels, expiry."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_matching_kit import (
    DOMAIN,
    LOT,
    MARKETS,
    addr,
    cancels,
    fills,
    ioc,
    key,
    lots_at,
    order,
    reject,
)

from perpnet.core.errors import ErrorCode
from perpnet.core.markets import USD
from perpnet.core.matching import CancelReason, MatchingEngine, OpenOrder
from perpnet.core.orders import OrderKind, SelfTrade, SignedOrder, TimeInForce

T = 1_000  # now_ms for scenarios that do not care about time
FOK = TimeInForce.FOK
POST = TimeInForce.POST_ONLY


@pytest.fixture
def engine() -> MatchingEngine:
    return MatchingEngine(MARKETS)


# -- resting and price-time priority ------------------------------------------


def test_non_crossing_orders_rest_and_show_in_depth(engine: MatchingEngine) -> None:
    for o in (
        order("a", "buy", 2, 99),
        order("b", "buy", 3, 99),
        order("a", "buy", 1, 98),
        order("c", "sell", 4, 101),
        order("c", "sell", 5, 103),
    ):
        result = engine.place(o, T)
        assert result.fills == [] and result.resting == o.order.size and not result.cancelled
    assert engine.best_bid(0) == 99 * USD and engine.best_ask(0) == 101 * USD
    assert lots_at(engine) == ([(99, 5), (98, 1)], [(101, 4), (103, 5)])
    assert lots_at(engine, 1) == ([(99, 5)], [(101, 4)])


def test_empty_book_has_no_prices(engine: MatchingEngine) -> None:
    assert engine.best_bid(0) is None and engine.best_ask(0) is None
    assert engine.depth(0, 5) == ([], [])
    assert engine.impact_prices(0, 1_000 * USD) == (None, None)


def test_better_price_fills_first_then_arrival_order(engine: MatchingEngine) -> None:
    late_101 = order("a", "sell", 2, 101)
    early_101 = order("b", "sell", 2, 101)
    best_100 = order("c", "sell", 2, 100)
    for o in (early_101, late_101, best_100):
        engine.place(o, T)
    result = engine.place(order("t", "buy", 5, 101), T)
    assert fills(result) == [(best_100, 2, 100), (early_101, 2, 101), (late_101, 1, 101)]
    assert result.resting == 0
    assert engine.resting(late_101.hash) == OpenOrder(late_101, 1 * LOT, False)
    assert engine.resting(early_101.hash) is None


def test_partial_fill_rests_the_remainder_at_the_limit(engine: MatchingEngine) -> None:
    maker = order("m", "sell", 3, 100)
    engine.place(maker, T)
    taker = order("t", "buy", 5, 102)
    result = engine.place(taker, T)
    assert fills(result) == [(maker, 3, 100)]  # at the maker's price, not 102
    assert result.resting == 2 * LOT and result.filled == 3 * LOT
    assert lots_at(engine) == ([(102, 2)], [])


def test_limit_stops_at_its_price(engine: MatchingEngine) -> None:
    engine.place(order("m", "sell", 1, 100), T)
    engine.place(order("m", "sell", 1, 101), T)
    engine.place(order("m", "sell", 1, 102), T)
    result = engine.place(order("t", "buy", 5, 101), T)
    assert [(lots, px) for _, lots, px in fills(result)] == [(1, 100), (1, 101)]
    assert lots_at(engine) == ([(101, 3)], [(102, 1)])


def test_sell_taker_walks_bids_downwards(engine: MatchingEngine) -> None:
    engine.place(order("m", "buy", 1, 98), T)
    engine.place(order("m", "buy", 1, 100), T)
    engine.place(order("m", "buy", 1, 99), T)
    result = engine.place(ioc("t", "sell", 3, 99), T)
    assert [(lots, px) for _, lots, px in fills(result)] == [(1, 100), (1, 99)]
    assert cancels(result)[0][1:] == (1, CancelReason.UNFILLED)
    assert lots_at(engine) == ([(98, 1)], [])


def test_a_partly_filled_maker_keeps_its_place(engine: MatchingEngine) -> None:
    first, second = order("a", "sell", 4, 100), order("b", "sell", 4, 100)
    engine.place(first, T)
    engine.place(second, T)
    engine.place(ioc("t", "buy", 1, 100), T)
    result = engine.place(ioc("t", "buy", 4, 100), T)
    assert fills(result) == [(first, 3, 100), (second, 1, 100)]


# -- time in force and kinds --------------------------------------------------


def test_ioc_fills_what_crosses_and_cancels_the_rest(engine: MatchingEngine) -> None:
    maker = order("m", "sell", 2, 100)
    engine.place(maker, T)
    taker = ioc("t", "buy", 5, 100)
    result = engine.place(taker, T)
    assert fills(result) == [(maker, 2, 100)]
    assert result.resting == 0
    assert cancels(result) == [(taker, 3, CancelReason.UNFILLED)]
    assert lots_at(engine) == ([], [])


def test_ioc_that_does_not_cross_is_cancelled_whole(engine: MatchingEngine) -> None:
    engine.place(order("m", "sell", 2, 101), T)
    taker = ioc("t", "buy", 5, 100)
    result = engine.place(taker, T)
    assert result.fills == [] and cancels(result) == [(taker, 5, CancelReason.UNFILLED)]


def test_fok_fills_in_full_across_levels(engine: MatchingEngine) -> None:
    engine.place(order("m", "sell", 2, 100), T)
    engine.place(order("m", "sell", 2, 101), T)
    result = engine.place(order("t", "buy", 3, 101, tif=FOK), T)
    assert [(lots, px) for _, lots, px in fills(result)] == [(2, 100), (1, 101)]
    assert result.cancelled == [] and result.resting == 0


def test_fok_that_cannot_fill_changes_nothing(engine: MatchingEngine) -> None:
    engine.place(order("m", "sell", 2, 100), T)
    engine.place(order("m", "sell", 2, 102), T)
    fok = order("t", "buy", 3, 101, tif=FOK)
    reject(engine, ErrorCode.FOK_UNFILLED, lambda: engine.place(fok, T))
    engine.place(order("m", "sell", 1, 101), T)
    assert engine.place(fok, T).filled == 3 * LOT  # a rejected order was not remembered


def test_fok_does_not_count_own_orders_it_would_cancel(engine: MatchingEngine) -> None:
    engine.place(order("t", "sell", 2, 100), T)
    engine.place(order("m", "sell", 2, 100), T)
    fok = order("t", "buy", 3, 100, tif=FOK)  # CANCEL_MAKER: only m's 2 lots can fill
    reject(engine, ErrorCode.FOK_UNFILLED, lambda: engine.place(fok, T))
    ok = order("t", "buy", 2, 100, tif=FOK)
    result = engine.place(ok, T)
    assert [(lots, reason) for _, lots, reason in cancels(result)] == [(2, CancelReason.SELF_TRADE)]
    assert result.filled == 2 * LOT


def test_post_only_rests_when_it_does_not_cross(engine: MatchingEngine) -> None:
    engine.place(order("m", "sell", 2, 101), T)
    result = engine.place(order("t", "buy", 2, 100, tif=POST), T)
    assert result.resting == 2 * LOT and result.fills == []


@pytest.mark.parametrize("price", [101, 102])
def test_post_only_that_would_take_is_rejected(engine: MatchingEngine, price: int) -> None:
    engine.place(order("m", "sell", 2, 101), T)
    post = order("t", "buy", 2, price, tif=POST)
    reject(engine, ErrorCode.POST_ONLY, lambda: engine.place(post, T))


def test_market_order_takes_up_to_its_worst_price(engine: MatchingEngine) -> None:
    engine.place(order("m", "buy", 1, 100), T)
    engine.place(order("m", "buy", 1, 95), T)
    engine.place(order("m", "buy", 1, 90), T)
    market = order("t", "sell", 5, 95, kind=OrderKind.MARKET, tif=TimeInForce.IOC)
    result = engine.place(market, T)
    assert [(lots, px) for _, lots, px in fills(result)] == [(1, 100), (1, 95)]
    assert cancels(result) == [(market, 3, CancelReason.UNFILLED)]
    assert lots_at(engine) == ([(90, 1)], [])


def test_market_fok(engine: MatchingEngine) -> None:
    engine.place(order("m", "buy", 1, 100), T)
    market = order("t", "sell", 2, 90, kind=OrderKind.MARKET, tif=FOK)
    reject(engine, ErrorCode.FOK_UNFILLED, lambda: engine.place(market, T))
    engine.place(order("m", "buy", 1, 91), T)
    assert engine.place(market, T).filled == 2 * LOT


def test_market_order_must_be_ioc_or_fok(engine: MatchingEngine) -> None:
    bad = order("t", "buy", 1, 100, kind=OrderKind.MARKET)
    reject(engine, ErrorCode.INVALID_FIELD, lambda: engine.place(bad, T))


# -- reduce-only --------------------------------------------------------------


def test_reduce_only_is_capped_at_the_position(engine: MatchingEngine) -> None:
    engine.place(order("m", "buy", 10, 100), T)
    close = ioc("t", "sell", 5, 100, reduce_only=True)
    result = engine.place(close, T, position=3 * LOT)  # long 3 lots: may sell 3
    assert result.filled == 3 * LOT
    assert cancels(result) == [(close, 2, CancelReason.REDUCE_ONLY)]


def test_reduce_only_buy_closes_a_short(engine: MatchingEngine) -> None:
    engine.place(order("m", "sell", 10, 100), T)
    result = engine.place(ioc("t", "buy", 2, 100, reduce_only=True), T, position=-5 * LOT)
    assert result.filled == 2 * LOT and result.cancelled == []


def test_reduce_only_fok_needs_only_the_capped_size(engine: MatchingEngine) -> None:
    engine.place(order("m", "buy", 2, 100), T)
    close = order("t", "sell", 5, 100, tif=FOK, reduce_only=True)
    result = engine.place(close, T, position=2 * LOT)
    assert result.filled == 2 * LOT
    assert cancels(result) == [(close, 3, CancelReason.REDUCE_ONLY)]


@pytest.mark.parametrize(
    ("side", "position"), [("sell", 0), ("sell", -LOT), ("buy", 0), ("buy", LOT)]
)
def test_reduce_only_that_cannot_reduce_is_rejected(
    engine: MatchingEngine, side: str, position: int
) -> None:
    engine.place(order("m", "buy", 1, 100), T)
    engine.place(order("m", "sell", 1, 101), T)
    o = ioc("t", side, 1, 100 if side == "sell" else 101, reduce_only=True)
    reject(engine, ErrorCode.REDUCE_ONLY, lambda: engine.place(o, T, position=position))


@pytest.mark.parametrize("tif", [TimeInForce.GTT, TimeInForce.POST_ONLY])
def test_reduce_only_must_be_ioc_or_fok(engine: MatchingEngine, tif: TimeInForce) -> None:
    o = order("t", "sell", 1, 100, tif=tif, reduce_only=True)
    reject(engine, ErrorCode.REDUCE_ONLY, lambda: engine.place(o, T, position=LOT))


# -- self-trade prevention ----------------------------------------------------


def test_cancel_maker_removes_own_order_and_keeps_taking(engine: MatchingEngine) -> None:
    own = order("t", "sell", 2, 100, subaccount=7)  # another subaccount: still the same owner
    other = order("m", "sell", 2, 100)
    engine.place(own, T)
    engine.place(other, T)
    result = engine.place(order("t", "buy", 3, 100), T)
    assert fills(result) == [(other, 2, 100)]
    assert cancels(result) == [(own, 2, CancelReason.SELF_TRADE)]
    assert result.resting == 1 * LOT
    assert engine.resting(own.hash) is None


def test_cancel_taker_keeps_the_maker(engine: MatchingEngine) -> None:
    other = order("m", "sell", 1, 99)
    own = order("t", "sell", 2, 100)
    engine.place(other, T)
    engine.place(own, T)
    taker = order("t", "buy", 5, 101, stp=SelfTrade.CANCEL_TAKER)
    result = engine.place(taker, T)
    assert fills(result) == [(other, 1, 99)]
    assert cancels(result) == [(taker, 4, CancelReason.SELF_TRADE)]
    assert result.resting == 0
    assert engine.resting(own.hash) == OpenOrder(own, 2 * LOT, False)


def test_cancel_both(engine: MatchingEngine) -> None:
    own = order("t", "sell", 2, 100)
    later = order("m", "sell", 2, 100)
    engine.place(own, T)
    engine.place(later, T)
    taker = ioc("t", "buy", 3, 100, stp=SelfTrade.CANCEL_BOTH)
    result = engine.place(taker, T)
    assert result.fills == []
    assert cancels(result) == [
        (own, 2, CancelReason.SELF_TRADE),
        (taker, 3, CancelReason.SELF_TRADE),
    ]
    assert lots_at(engine) == ([], [(100, 2)])


# -- cancel -------------------------------------------------------------------


def test_cancel_removes_and_reports_the_remaining_size(engine: MatchingEngine) -> None:
    resting = order("a", "buy", 3, 100)
    engine.place(resting, T)
    engine.place(ioc("b", "sell", 1, 100), T)
    cancelled = engine.cancel(resting.hash, addr("a"), T)
    assert (cancelled.order, cancelled.size, cancelled.reason) == (
        resting,
        2 * LOT,
        CancelReason.USER,
    )
    assert lots_at(engine) == ([], [])
    reject(engine, ErrorCode.UNKNOWN_ORDER, lambda: engine.cancel(resting.hash, addr("a"), T))
    reject(engine, ErrorCode.REPLAY, lambda: engine.place(resting, T))


def test_only_the_owner_may_cancel(engine: MatchingEngine) -> None:
    resting = order("a", "buy", 3, 100)
    engine.place(resting, T)
    reject(engine, ErrorCode.NOT_OWNER, lambda: engine.cancel(resting.hash, addr("b"), T))
    reject(engine, ErrorCode.UNKNOWN_ORDER, lambda: engine.cancel(b"\x00" * 32, addr("a"), T))


def test_cancel_of_an_expired_order_says_so(engine: MatchingEngine) -> None:
    resting = order("a", "buy", 3, 100, expiry_ms=2_000)
    engine.place(resting, T)
    assert engine.cancel(resting.hash, addr("a"), 2_001).reason == CancelReason.EXPIRED


def test_cancelling_empties_a_level_and_later_orders_reuse_it(engine: MatchingEngine) -> None:
    a, b = order("a", "buy", 1, 100), order("a", "buy", 1, 101)
    engine.place(a, T)
    engine.place(b, T)
    engine.cancel(b.hash, addr("a"), T)
    assert engine.best_bid(0) == 100 * USD
    engine.place(order("a", "buy", 2, 101), T)
    assert lots_at(engine) == ([(101, 2), (100, 1)], [])


# -- amend --------------------------------------------------------------------


def test_amend_down_at_the_same_price_keeps_priority(engine: MatchingEngine) -> None:
    first, second = order("a", "sell", 3, 100), order("b", "sell", 3, 100)
    engine.place(first, T)
    engine.place(second, T)
    smaller = order("a", "sell", 2, 100)
    result = engine.amend(first.hash, smaller, T)
    assert result.resting == 2 * LOT and result.fills == []
    assert cancels(result) == [(first, 3, CancelReason.REPLACED)]
    assert lots_at(engine) == ([], [(100, 5)])
    taken = engine.place(ioc("t", "buy", 2, 100), T)
    assert fills(taken) == [(smaller, 2, 100)]


@pytest.mark.parametrize(("lots", "price"), [(4, 100), (3, 101)])
def test_amend_up_or_to_another_price_goes_to_the_back(
    engine: MatchingEngine, lots: int, price: int
) -> None:
    first, second = order("a", "sell", 3, 100), order("b", "sell", 3, 100)
    engine.place(first, T)
    engine.place(second, T)
    engine.place(order("b", "sell", 3, 101), T)
    new = order("a", "sell", lots, price)
    engine.amend(first.hash, new, T)
    taken = engine.place(ioc("t", "buy", 3, 100), T)
    assert fills(taken) == [(second, 3, 100)]


def test_amend_after_a_partial_fill_compares_with_what_remains(engine: MatchingEngine) -> None:
    first, second = order("a", "sell", 4, 100), order("b", "sell", 4, 100)
    engine.place(first, T)
    engine.place(second, T)
    engine.place(ioc("t", "buy", 2, 100), T)  # first has 2 left
    engine.amend(first.hash, order("a", "sell", 3, 100), T)  # 3 > 2: loses priority
    assert fills(engine.place(ioc("t", "buy", 1, 100), T))[0][0] == second


def test_amend_to_a_crossing_price_trades(engine: MatchingEngine) -> None:
    bid = order("m", "buy", 2, 99)
    engine.place(bid, T)
    ask = order("a", "sell", 3, 101)
    engine.place(ask, T)
    result = engine.amend(ask.hash, order("a", "sell", 3, 99), T)
    assert fills(result) == [(bid, 2, 99)] and result.resting == 1 * LOT
    assert cancels(result) == [(ask, 3, CancelReason.REPLACED)]


def test_amend_rules_and_rejections_change_nothing(engine: MatchingEngine) -> None:
    ask = order("a", "sell", 3, 101)
    engine.place(order("m", "buy", 1, 100), T)
    engine.place(ask, T)
    cases = [
        (ErrorCode.NOT_OWNER, ask.hash, order("b", "sell", 1, 101)),
        (ErrorCode.UNKNOWN_ORDER, b"\x01" * 32, order("a", "sell", 1, 101)),
        (ErrorCode.INVALID_FIELD, ask.hash, order("a", "buy", 1, 99)),
        (ErrorCode.INVALID_FIELD, ask.hash, order("a", "sell", 1, 101, market_id=1)),
        (ErrorCode.POST_ONLY, ask.hash, order("a", "sell", 1, 100, tif=POST)),
        (ErrorCode.FOK_UNFILLED, ask.hash, order("a", "sell", 2, 100, tif=FOK)),
        (ErrorCode.DUPLICATE_ORDER, ask.hash, ask),
        (ErrorCode.REDUCE_ONLY, ask.hash, order("a", "sell", 1, 101, reduce_only=True)),
    ]
    for code, old, new in cases:
        reject(engine, code, lambda old=old, new=new: engine.amend(old, new, T))
    assert engine.resting(ask.hash) == OpenOrder(ask, 3 * LOT, False)


def test_amend_of_an_expired_order_is_unknown(engine: MatchingEngine) -> None:
    ask = order("a", "sell", 3, 101, expiry_ms=2_000)
    engine.place(ask, T)
    new = order("a", "sell", 2, 101)
    reject(engine, ErrorCode.UNKNOWN_ORDER, lambda: engine.amend(ask.hash, new, 2_001))


# -- admission: validation, expiry, replay ------------------------------------


def test_rejections_of_bad_orders_change_nothing(engine: MatchingEngine) -> None:
    engine.place(order("m", "sell", 2, 101), T)
    raw = replace(order("t", "buy", 1, 100).order, price=100 * USD + 1)
    off_tick = SignedOrder.create(raw, key("t"), DOMAIN)
    reject(engine, ErrorCode.OFF_TICK, lambda: engine.place(off_tick, T))
    elsewhere = order("t", "buy", 1, 1, market_id=9)
    reject(engine, ErrorCode.UNKNOWN_MARKET, lambda: engine.place(elsewhere, T))
    expired = order("t", "buy", 1, 100, expiry_ms=T - 1)
    reject(engine, ErrorCode.EXPIRED, lambda: engine.place(expired, T))
    engine.place(order("t", "buy", 1, 100, expiry_ms=T), T)  # expiry is inclusive


def test_duplicates_and_replays_are_rejected(engine: MatchingEngine) -> None:
    resting = order("a", "buy", 2, 100)
    engine.place(resting, T)
    reject(engine, ErrorCode.DUPLICATE_ORDER, lambda: engine.place(resting, T))
    engine.place(ioc("b", "sell", 2, 100), T)  # fills it completely
    reject(engine, ErrorCode.REPLAY, lambda: engine.place(resting, T))
    taker = ioc("c", "buy", 1, 100)
    engine.place(taker, T)
    reject(engine, ErrorCode.REPLAY, lambda: engine.place(taker, T))


def test_expire_removes_due_orders_and_prunes_replay_memory(engine: MatchingEngine) -> None:
    soon = order("a", "buy", 1, 100, expiry_ms=2_000)
    later = order("a", "buy", 1, 99, expiry_ms=5_000)
    stop = order(
        "a",
        "sell",
        1,
        90,
        kind=OrderKind.STOP_MARKET,
        tif=TimeInForce.IOC,
        trigger=95,
        expiry_ms=2_500,
    )
    gtc = order("a", "sell", 1, 110)
    for o in (soon, later, stop, gtc):
        engine.place(o, T)
    assert engine.expire(2_000) == []  # expiry_ms is the last valid millisecond
    assert engine.expire(3_000) == [soon, stop]
    assert lots_at(engine) == ([(99, 1)], [(110, 1)])
    # forgotten hashes cannot come back: anything that expired before the horizon is EXPIRED
    reject(engine, ErrorCode.EXPIRED, lambda: engine.place(soon, 1_500))
    assert engine.expire(6_000) == [later]
    assert [o.order for o in engine.open_orders(addr("a"))] == [gtc]


def test_an_expired_maker_is_dropped_not_filled(engine: MatchingEngine) -> None:
    stale = order("a", "sell", 1, 100, expiry_ms=2_000)
    fresh = order("b", "sell", 1, 100)
    engine.place(stale, T)
    engine.place(fresh, T)
    result = engine.place(ioc("t", "buy", 2, 100), 2_001)
    assert fills(result) == [(fresh, 1, 100)]
    assert cancels(result)[0] == (stale, 1, CancelReason.EXPIRED)


# -- queries ------------------------------------------------------------------


def test_open_orders_lists_every_subaccount_in_placement_order(engine: MatchingEngine) -> None:
    a1 = order("a", "buy", 1, 100)
    a2 = order("a", "sell", 1, 105, subaccount=2)
    engine.place(a1, T)
    engine.place(order("b", "buy", 1, 100), T)
    engine.place(a2, T)
    assert engine.open_orders(addr("a")) == [OpenOrder(a1, LOT, False), OpenOrder(a2, LOT, False)]
    assert engine.open_orders(addr("z")) == []


def test_impact_prices_hand_computed(engine: MatchingEngine) -> None:
    # asks: 1 BTC at 100 and 1 BTC at 110 (1 BTC = 10_000 lots)
    engine.place(order("m", "sell", 10_000, 100), T)
    engine.place(order("m", "sell", 10_000, 110), T)
    engine.place(order("m", "buy", 10_000, 90), T)
    # buying $155: $100 buys 1 BTC, $55 buys 0.5 BTC at 110 -> 155 / 1.5 = 103.33.. ceiled
    bid, ask = engine.impact_prices(0, 155 * USD)
    assert ask == 103_333_334
    assert bid is None  # only $90 of bids
    assert engine.impact_prices(0, 90 * USD) == (90 * USD, 100 * USD)
    assert engine.impact_prices(0, 45 * USD)[0] == 90 * USD


def test_impact_bid_is_floored(engine: MatchingEngine) -> None:
    engine.place(order("m", "buy", 10_000, 100), T)
    engine.place(order("m", "buy", 10_000, 80), T)
    # selling $150: 1 BTC at 100, then 0.625 BTC at 80 -> 150 / 1.625 = 92.307692..
    assert engine.impact_prices(0, 150 * USD)[0] == 92_307_692


# -- persistence and determinism ----------------------------------------------


def _script(engine: MatchingEngine) -> list[object]:
    out: list[object] = []
    orders = [
        order("a", "sell", 3, 101, nonce=1),
        order("b", "sell", 2, 101, nonce=2),
        order("c", "buy", 4, 99, nonce=3),
        order("e", "buy", 2, 101, nonce=4),
        order("d", "sell", 5, 98, tif=TimeInForce.IOC, nonce=5),
    ]
    for o in orders:
        out.append(engine.place(o, T))
    out.append(engine.amend(orders[1].hash, order("b", "sell", 1, 101, nonce=6), T))
    out.append(engine.place(order("e", "buy", 2, 102, nonce=7), T))
    return out


def test_same_calls_give_the_same_results_and_book() -> None:
    first, second = MatchingEngine(MARKETS), MatchingEngine(MARKETS)
    assert _script(first) == _script(second)
    assert first.snapshot() == second.snapshot()


def test_snapshot_restore_keeps_remaining_sizes_and_priority(engine: MatchingEngine) -> None:
    a, b = order("a", "sell", 4, 100), order("b", "sell", 4, 100)
    stop = order("c", "buy", 1, 120, kind=OrderKind.STOP_MARKET, tif=TimeInForce.IOC, trigger=110)
    engine.place(a, T)
    engine.place(b, T)
    engine.place(stop, T)
    engine.place(ioc("t", "buy", 1, 100), T)
    restored = MatchingEngine.restore(engine.snapshot(), MARKETS)
    assert restored.snapshot() == engine.snapshot()
    assert restored.resting(a.hash) == OpenOrder(a, 3 * LOT, False)
    probe = ioc("t", "buy", 4, 100)
    assert restored.place(probe, T) == engine.place(probe, T)
    reject(restored, ErrorCode.REPLAY, lambda: restored.place(probe, T))
    assert restored.on_oracle_price(0, 110 * USD, T) == engine.on_oracle_price(0, 110 * USD, T)
