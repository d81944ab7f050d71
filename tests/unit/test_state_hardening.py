"""Refusals that protect the system: forged orders, unrepresentable values, stale prices,
funding bursts, the insurance fund's own positions, the deleveraging queue."""

from __future__ import annotations

import dataclasses

from perpnet.core.accounts import INSURANCE_FUND_ID, SYSTEM_OWNER
from perpnet.core.errors import ErrorCode
from perpnet.core.events import Liquidated
from perpnet.core.markets import USD
from perpnet.core.orders import SignedOrder, typed_digest
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Deleverage, Deposit, FundingTick, Liquidate, Trade
from perpnet.core.typed_data import Domain
from perpnet.testkit import Desk, config, trader

ALICE, BOB, CAROL, DAVE = (trader(n) for n in ("alice", "bob", "carol", "dave"))
BTC = 0
P50K = 50_000 * USD
CENT_BTC = 10**8


def funded(desk: Desk, *who: tuple[object, int]) -> ExchangeState:
    state = desk.state()
    for key, amount in who:
        state.apply(desk.deposit(key, amount))  # type: ignore[arg-type]
    state.apply(desk.price(BTC, P50K))
    return state


def test_an_order_body_cannot_change_under_its_hash(desk: Desk, reject) -> None:
    state = funded(desk, (ALICE, 10_000 * USD), (BOB, 10_000 * USD))
    bid = desk.order(ALICE, BTC, True, 2 * CENT_BTC, P50K)
    state.apply(desk.trade(bid, desk.order(BOB, BTC, False, CENT_BTC, P50K), CENT_BTC))
    # same hash and signature, a bigger and dearer body: refused on the second fill
    forged = SignedOrder(
        dataclasses.replace(bid.order, size=10**10, price=100_000 * USD), b"\0" * 65, bid.hash
    )
    ask = desk.order(BOB, BTC, False, CENT_BTC, 100_000 * USD)
    reject(state, Trade(desk.tick(), forged, ask, CENT_BTC, 100_000 * USD), ErrorCode.BAD_SIGNATURE)
    # and on a first fill, a hash that is not the body's digest is refused too
    fresh = desk.order(ALICE, BTC, True, CENT_BTC, P50K)
    lying = SignedOrder(
        dataclasses.replace(fresh.order, price=60_000 * USD), fresh.signature, fresh.hash
    )
    ask = desk.order(BOB, BTC, False, CENT_BTC, 60_000 * USD)
    reject(state, Trade(desk.tick(), lying, ask, CENT_BTC, 60_000 * USD), ErrorCode.BAD_SIGNATURE)


def test_an_order_equal_to_a_hashed_one_but_of_other_types_is_refused(desk: Desk, reject) -> None:
    """The first-fill hash check reads a memo keyed by the order; 1 == True, so a twin with
    is_buy=1 would find the real order's entry: the exact field types are checked first."""
    state = funded(desk, (ALICE, 10_000 * USD), (BOB, 10_000 * USD))
    bid = desk.order(ALICE, BTC, True, CENT_BTC, P50K)
    ask = desk.order(BOB, BTC, False, CENT_BTC, P50K)
    typed_digest(bid.order, desk.config.domain)  # the memo holds the real order
    twin = SignedOrder(dataclasses.replace(bid.order, is_buy=1), bid.signature, bid.hash)
    assert twin.order == bid.order
    reject(state, Trade(desk.tick(), twin, ask, CENT_BTC, P50K), ErrorCode.INVALID_FIELD)
    state.apply(Trade(desk.tick(), bid, ask, CENT_BTC, P50K))  # the real one fills


def test_orders_signed_for_another_deployment_are_refused(reject) -> None:
    home = Desk()
    state = funded(home, (ALICE, 10_000 * USD), (BOB, 10_000 * USD))
    away = Desk(dataclasses.replace(config(), domain=Domain(chain_id=1)))
    away.now_ms = home.now_ms
    tx = away.cross(ALICE, BOB, BTC, True, CENT_BTC, P50K)
    reject(state, tx, ErrorCode.BAD_SIGNATURE)


def test_wrong_types_are_refused_before_anything_happens(desk: Desk, reject) -> None:
    state = funded(desk, (ALICE, 10_000 * USD), (BOB, 10_000 * USD))
    maybe = desk.order(ALICE, BTC, True, CENT_BTC, P50K)
    untyped = SignedOrder(
        dataclasses.replace(maybe.order, is_buy=None), maybe.signature, maybe.hash
    )  # type: ignore[arg-type]
    ask = desk.order(BOB, BTC, False, CENT_BTC, P50K)
    reject(state, Trade(desk.tick(), untyped, ask, CENT_BTC, P50K), ErrorCode.INVALID_FIELD)
    reject(state, Deposit(desk.tick(), 2, ALICE.address, 0, 1.5), ErrorCode.INVALID_FIELD)  # type: ignore[arg-type]
    reject(state, Deposit(desk.tick(), 2, b"short", 0, USD), ErrorCode.INVALID_FIELD)
    reject(state, "not a transaction", ErrorCode.INVALID_FIELD)  # type: ignore[arg-type]


def test_values_the_leaf_cannot_hold_are_refused_and_the_root_survives(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 2**126))
    reject(state, desk.deposit(ALICE, 2**126), ErrorCode.INVALID_FIELD)
    assert len(state.root()) == 32
    small = ExchangeState(dataclasses.replace(config(), tree_depth=2))
    tiny = Desk(small.config)
    small.apply(tiny.deposit(ALICE, USD))
    small.apply(tiny.deposit(BOB, USD))  # accounts 2 and 3 fill a depth-2 tree
    reject(small, tiny.deposit(CAROL, USD), ErrorCode.INVALID_FIELD)
    assert len(small.root()) == 32


def test_no_margin_decision_on_a_stale_price(reject) -> None:
    desk = Desk(config(price_age_ms=30_000))
    state = funded(desk, (ALICE, 10_000 * USD), (BOB, 10_000 * USD))
    state.apply(desk.cross(ALICE, BOB, BTC, True, CENT_BTC, P50K))
    desk.tick(30_001)
    reject(state, desk.withdraw(ALICE, USD, 0), ErrorCode.ORACLE_STALE)
    reject(state, desk.cross(ALICE, BOB, BTC, True, CENT_BTC, P50K), ErrorCode.ORACLE_STALE)
    reject(state, FundingTick(desk.tick(), ((BTC, 1),)), ErrorCode.ORACLE_STALE)
    state.apply(desk.price(BTC, P50K))
    state.apply(desk.withdraw(ALICE, USD, 0))


def test_the_funding_clamp_is_per_period_not_per_tick(reject) -> None:
    hourly = dataclasses.replace(config(), funding_period_ms=3_600_000)
    desk = Desk(hourly)
    state = funded(desk)
    start = desk.tick()
    state.apply(FundingTick(start, ((BTC, 10_000_000),)))  # a first tick: the full 1 %
    desk.now_ms = start + 59_000
    state.apply(desk.price(BTC, P50K))
    # a minute later only 1/60 of the hourly clamp: 10,000,000 / 60 = 166,666 ppb
    late = start + 60_000
    reject(state, FundingTick(late, ((BTC, 166_667),)), ErrorCode.FUNDING_CLAMP)
    state.apply(FundingTick(late, ((BTC, 166_666),)))


def test_the_insurance_fund_closes_what_it_took_over(desk: Desk, reject) -> None:
    state = funded(desk, (ALICE, 300 * USD), (BOB, 10_000 * USD), (CAROL, 10_000 * USD))
    state.apply(desk.cross(BOB, ALICE, BTC, True, 10 * CENT_BTC, P50K))  # alice long 0.1 BTC
    state.apply(desk.deposit(SYSTEM_OWNER, 1_000 * USD))
    state.apply(desk.price(BTC, 47_500 * USD))
    state.apply(Liquidate(desk.tick(), 2, BTC, 10 * CENT_BTC, 0, None))
    assert state.account(INSURANCE_FUND_ID).size(BTC) == 10 * CENT_BTC
    bid = desk.order(CAROL, BTC, True, 10 * CENT_BTC, 47_400 * USD)
    (event,) = state.apply(
        Liquidate(desk.tick(), INSURANCE_FUND_ID, BTC, 10 * CENT_BTC, 47_400 * USD, bid)
    )
    assert isinstance(event, Liquidated) and event.fee == 0
    assert state.account(INSURANCE_FUND_ID).positions == {}
    assert state.account(4).size(BTC) == 10 * CENT_BTC
    # without a resting order the fund has nothing to close against
    reject(
        state,
        Liquidate(desk.tick(), INSURANCE_FUND_ID, BTC, CENT_BTC, 0, None),
        ErrorCode.NOT_LIQUIDATABLE,
    )


def test_deleveraging_follows_the_queue(desk: Desk, reject) -> None:
    state = funded(
        desk, (ALICE, 520 * USD), (BOB, 2_000 * USD), (CAROL, 20_000 * USD), (DAVE, 20_000 * USD)
    )
    state.apply(desk.cross(BOB, ALICE, BTC, True, 10 * CENT_BTC, P50K))  # bob short 0.1 (5x)
    state.apply(desk.cross(CAROL, DAVE, BTC, False, 10 * CENT_BTC, P50K))  # carol short 0.1 (0.25x)
    state.apply(desk.cross(DAVE, ALICE, BTC, True, 10 * CENT_BTC, P50K))  # alice long 0.2
    state.apply(desk.price(BTC, 47_000 * USD))
    assert state.risk(state.account(2)).value < 0
    # bob is more leveraged than carol: he is first in the queue
    reject(state, Deleverage(desk.tick(), 2, 4, BTC, 10 * CENT_BTC), ErrorCode.NOT_DELEVERAGEABLE)
    state.apply(Deleverage(desk.tick(), 2, 3, BTC, 10 * CENT_BTC))


def test_closing_everything_at_bankruptcy_leaves_exactly_zero(desk: Desk) -> None:
    state = funded(desk, (ALICE, 300 * USD), (BOB, 10_000 * USD))
    state.apply(desk.deposit(SYSTEM_OWNER, 1_000 * USD))
    state.apply(desk.cross(BOB, ALICE, BTC, True, 10 * CENT_BTC, P50K))
    state.apply(desk.price(BTC, 45_999_999_999))  # an off-tick oracle price
    state.apply(Liquidate(desk.tick(), 2, BTC, 10 * CENT_BTC, 0, None))
    assert state.account(2).collateral == 0 and state.account(2).positions == {}
