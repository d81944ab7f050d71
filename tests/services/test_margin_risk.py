"""The margin engine's decisions on a core state: pre-trade checks, takeovers, deleveraging,
funding ticks. Every transaction they produce is applied by the core, as the sequencer would."""

from __future__ import annotations

from dataclasses import replace

import pytest

from perpnet.core.accounts import INSURANCE_FUND_ID
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import USD
from perpnet.core.orders import TimeInForce
from perpnet.core.state import ExchangeState
from perpnet.margin import risk
from perpnet.testkit import Desk, trader

BTC = 0
ONE = 10**10  # one BTC in size quantums
ALICE, BOB = trader("alice"), trader("bob")


@pytest.fixture
def desk() -> Desk:
    return Desk()


def opened(desk: Desk, price: int = 50_000 * USD) -> ExchangeState:
    """Alice long 1 BTC against Bob, each with 10,000 USD."""
    state = desk.state()
    for tx in (
        desk.deposit(ALICE, 10_000 * USD),
        desk.deposit(BOB, 10_000 * USD),
        desk.price(BTC, price),
        desk.cross(BOB, ALICE, BTC, True, ONE, price),
    ):
        state.apply(tx)
    return state


def test_check_order_passes_within_initial_margin_and_refuses_beyond(desk: Desk) -> None:
    state = opened(desk)
    small = desk.order(ALICE, BTC, True, ONE, 50_000 * USD).order
    assert risk.check_order(state, small, []).ok  # 2 BTC on ~10k: 5,000 initial
    huge = desk.order(ALICE, BTC, True, 3 * ONE, 50_000 * USD).order
    verdict = risk.check_order(state, huge, [small])
    assert not verdict.ok and verdict.reason == ErrorCode.INSUFFICIENT_MARGIN
    assert "initial margin" in verdict.message and verdict.position == ONE
    assert verdict.risk is not None and verdict.risk.value < verdict.risk.initial
    reducing = desk.order(ALICE, BTC, False, 5 * ONE, 1 * USD, tif=TimeInForce.IOC)
    assert risk.check_order(state, replace(reducing.order, reduce_only=True), []).ok
    stranger = desk.order(trader("nobody"), BTC, True, ONE, 50_000 * USD).order
    assert risk.check_order(state, stranger, []).reason == ErrorCode.INSUFFICIENT_MARGIN
    no_price = desk.order(ALICE, 1, True, 10**9, 3_000 * USD).order
    assert risk.check_order(state, no_price, []).reason == ErrorCode.NO_PRICE


def test_the_fund_takes_over_an_account_below_maintenance(desk: Desk) -> None:
    state = opened(desk)
    state.apply(desk.price(BTC, 41_000 * USD))
    assert risk.liquidatable(state, 10) == [2]
    [takeover] = risk.takeovers(state, 2, desk.tick())
    state.apply(takeover)
    assert state.account(2).positions == {}
    assert state.account(INSURANCE_FUND_ID).size(BTC) == ONE
    assert risk.liquidatable(state, 10) == []


def test_a_bankrupt_account_the_fund_cannot_cover_is_deleveraged(desk: Desk) -> None:
    state = opened(desk)
    state.apply(desk.price(BTC, 39_000 * USD))
    [takeover] = risk.takeovers(state, 2, desk.tick())
    with pytest.raises(CoreError) as refused:
        state.apply(takeover)
    assert refused.value.code == ErrorCode.INSURANCE_INSUFFICIENT
    offset = risk.deleverage(state, 2, BTC, desk.tick())
    assert offset is not None and offset.offset_account_id == 3 and offset.size == ONE
    state.apply(offset)
    assert state.account(2).positions == {} and state.account(3).positions == {}
    assert risk.fund_deficit(state, desk.tick()) == []


def test_funding_tick_is_the_clamped_mean_premium_and_waits_for_its_interval(desk: Desk) -> None:
    state = opened(desk)
    funding = risk.FundingDesk(state.markets)
    index = 50_000 * USD
    funding.sample(BTC, index + index // 100, None, index)  # +1 %: longs pay
    funding.sample(BTC, index + index // 50, None, index)  # +2 %
    tick = funding.tick(state, desk.tick())
    assert tick is not None
    limit = state.markets.get(BTC).max_funding_rate_ppb
    assert tick.rates == ((BTC, min(limit, 15_000_000)),)  # markets without a price sit out
    state.apply(tick)
    assert state.funding_index[BTC] > 0
    assert funding.tick(state, desk.tick()) is None  # the interval has not elapsed
