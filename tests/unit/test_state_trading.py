"""Trade settlement with hand-computed balances, fees and every rejection path."""

from __future__ import annotations

import dataclasses

import pytest

from perpnet.core.accounts import FEE_POOL_ID
from perpnet.core.crypto import PrivateKey
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.events import Filled
from perpnet.core.markets import USD
from perpnet.core.orders import OrderKind, SignedOrder, TimeInForce
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Trade
from perpnet.testkit import Desk, trader

ALICE, BOB, CAROL, MALLORY = (trader(n) for n in ("alice", "bob", "carol", "mallory"))
BTC, ETH, SOL = 0, 1, 2
CENT_BTC = 10**8  # 0.01 BTC in base quantums (10**10 per BTC)
P50K = 50_000 * USD


def funded(desk: Desk, *keys_and_amounts: tuple[PrivateKey, int]) -> ExchangeState:
    """A state with BTC at 50,000, ETH at 2,000, SOL at 150 and the given deposits."""
    state = desk.state()
    for key, amount in keys_and_amounts:
        state.apply(desk.deposit(key, amount))
    state.apply(desk.price(BTC, P50K))
    state.apply(desk.price(ETH, 2_000 * USD))
    state.apply(desk.price(SOL, 150 * USD))
    return state


@pytest.fixture
def state(desk: Desk) -> ExchangeState:
    # alice -> account 2, bob -> 3, carol -> 4
    return funded(desk, (ALICE, 10_000 * USD), (BOB, 10_000 * USD), (CAROL, 10_000 * USD))


def test_fill_moves_collateral_positions_and_fees(desk: Desk, state: ExchangeState) -> None:
    maker = desk.order(ALICE, BTC, False, CENT_BTC, P50K)
    taker = desk.order(BOB, BTC, True, CENT_BTC, P50K, tif=TimeInForce.IOC)
    events = state.apply(desk.trade(maker, taker))
    # 0.01 BTC × 50,000 = 500 USD; maker fee 200 ppm = 0.10 USD; taker fee 500 ppm = 0.25 USD
    assert events == (Filled(BTC, 2, 3, False, CENT_BTC, P50K, 100_000, 250_000),)
    alice, bob = state.account(2), state.account(3)
    assert alice.collateral == 10_000 * USD + 500 * USD - 100_000 == 10_499_900_000
    assert bob.collateral == 10_000 * USD - 500 * USD - 250_000 == 9_499_750_000
    assert (alice.size(BTC), bob.size(BTC)) == (-CENT_BTC, CENT_BTC)
    assert (alice.positions[BTC].cost, bob.positions[BTC].cost) == (-500 * USD, 500 * USD)
    assert state.account(FEE_POOL_ID).collateral == 350_000
    assert state.filled(maker.hash) == state.filled(taker.hash) == CENT_BTC
    assert state.open_interest(BTC) == (CENT_BTC, CENT_BTC)


def test_fees_round_up_to_whole_quantums(desk: Desk, state: ExchangeState) -> None:
    price = 150_123_000  # 150.123 USD per SOL (tick 0.001 USD)
    maker = desk.order(ALICE, SOL, True, 10**5, price)  # 0.01 SOL
    taker = desk.order(BOB, SOL, False, 10**5, price, tif=TimeInForce.IOC)
    (fill,) = state.apply(desk.trade(maker, taker))
    # 0.01 SOL × 150.123 = 1.50123 USD = 1,501,230 quantums;
    # maker ×200 ppm = 300.246 -> 301; taker ×500 ppm = 750.615 -> 751
    assert isinstance(fill, Filled)
    assert (fill.maker_fee, fill.taker_fee) == (301, 751)
    assert state.account(2).collateral == 10_000 * USD - 1_501_230 - 301
    assert state.account(3).collateral == 10_000 * USD + 1_501_230 - 751
    assert state.account(FEE_POOL_ID).collateral == 1_052


def test_fill_price_must_lie_within_both_limits(desk: Desk, state: ExchangeState, reject) -> None:
    maker = desk.order(ALICE, BTC, False, CENT_BTC, 49_900 * USD)
    taker = desk.order(BOB, BTC, True, CENT_BTC, 50_100 * USD, tif=TimeInForce.IOC)
    for price in (49_899 * USD, 50_101 * USD):
        reject(state, Trade(desk.tick(), maker, taker, CENT_BTC, price), ErrorCode.PRICE_LIMIT)
    state.apply(Trade(desk.tick(), maker, taker, CENT_BTC, P50K))
    # any price inside [49,900, 50,100] settles at that price: 0.01 × 50,000 = 500 USD
    assert state.account(2).collateral == 10_000 * USD + 500 * USD - 100_000
    assert state.account(3).collateral == 10_000 * USD - 500 * USD - 250_000


def test_partial_fills_accumulate_and_overfill_is_rejected(
    desk: Desk, state: ExchangeState, reject
) -> None:
    maker = desk.order(ALICE, BTC, False, 3 * CENT_BTC, P50K)
    for key in (BOB, CAROL):
        state.apply(desk.trade(maker, desk.order(key, BTC, True, CENT_BTC, P50K)))
    assert state.filled(maker.hash) == 2 * CENT_BTC
    big = desk.order(BOB, BTC, True, 2 * CENT_BTC, P50K)
    reject(state, desk.trade(maker, big), ErrorCode.OVERFILL)  # 2 + 2 > 3 hundredths
    last = desk.trade(maker, big, CENT_BTC)
    state.apply(last)
    assert state.filled(maker.hash) == 3 * CENT_BTC
    assert state.filled(big.hash) == CENT_BTC
    assert state.account(2).size(BTC) == -3 * CENT_BTC
    # the fully filled maker order cannot fill again, not even by its smallest step
    reject(state, desk.trade(maker, big, 10**6), ErrorCode.OVERFILL)
    # nor can the very same Trade be replayed later
    reject(state, dataclasses.replace(last, timestamp_ms=desk.tick()), ErrorCode.OVERFILL)


def test_expired_order_is_rejected_expiry_is_inclusive(
    desk: Desk, state: ExchangeState, reject
) -> None:
    expiry = desk.now_ms + 2
    maker = desk.order(ALICE, BTC, False, 2 * CENT_BTC, P50K, expiry_ms=expiry)
    taker = desk.order(BOB, BTC, True, 2 * CENT_BTC, P50K)
    state.apply(Trade(expiry, maker, taker, CENT_BTC, P50K))  # ts == expiry still fills
    reject(state, Trade(expiry + 1, maker, taker, CENT_BTC, P50K), ErrorCode.EXPIRED)
    assert state.filled(maker.hash) == CENT_BTC


def test_post_only_cannot_take_and_ioc_or_market_cannot_make(
    desk: Desk, state: ExchangeState, reject
) -> None:
    resting = desk.order(ALICE, BTC, False, CENT_BTC, P50K)
    post_only = desk.order(BOB, BTC, True, CENT_BTC, P50K, tif=TimeInForce.POST_ONLY)
    reject(state, desk.trade(resting, post_only), ErrorCode.POST_ONLY)
    ioc = desk.order(ALICE, BTC, False, CENT_BTC, P50K, tif=TimeInForce.IOC)
    market = desk.order(
        ALICE, BTC, False, CENT_BTC, P50K, kind=OrderKind.MARKET, tif=TimeInForce.IOC
    )
    taker = desk.order(BOB, BTC, True, CENT_BTC, P50K, tif=TimeInForce.IOC)
    for maker in (ioc, market):
        reject(state, desk.trade(maker, taker), ErrorCode.INVALID_FIELD, match="resting limit")
    # a post-only order rests and makes; a market order takes
    bid = desk.order(ALICE, BTC, True, CENT_BTC, P50K, tif=TimeInForce.POST_ONLY)
    sell = desk.order(BOB, BTC, False, CENT_BTC, P50K, kind=OrderKind.MARKET, tif=TimeInForce.IOC)
    state.apply(desk.trade(bid, sell))
    assert state.account(2).size(BTC) == CENT_BTC
    assert state.account(2).collateral == 10_000 * USD - 500 * USD - 100_000


def test_same_side_orders_do_not_trade(desk: Desk, state: ExchangeState, reject) -> None:
    a = desk.order(ALICE, BTC, True, CENT_BTC, P50K)
    b = desk.order(BOB, BTC, True, CENT_BTC, P50K)
    reject(state, desk.trade(a, b), ErrorCode.INVALID_FIELD, match="same side")


def test_reduce_only_is_enforced_at_settlement(desk: Desk, state: ExchangeState, reject) -> None:
    ask = desk.order(ALICE, BTC, False, 5 * CENT_BTC, P50K)
    # bob holds nothing: a reduce-only buy would open a position
    opening = desk.order(BOB, BTC, True, CENT_BTC, P50K, reduce_only=True)
    reject(state, desk.trade(ask, opening), ErrorCode.REDUCE_ONLY)
    state.apply(desk.trade(ask, desk.order(BOB, BTC, True, CENT_BTC, P50K)))
    # bob long 0.01: a reduce-only buy adds to it; a 0.02 reduce-only sell would flip it
    adding = desk.order(BOB, BTC, True, CENT_BTC, P50K, reduce_only=True)
    reject(state, desk.trade(ask, adding), ErrorCode.REDUCE_ONLY)
    bid = desk.order(CAROL, BTC, True, 5 * CENT_BTC, P50K)
    closing = desk.order(BOB, BTC, False, 2 * CENT_BTC, P50K, reduce_only=True)
    reject(state, desk.trade(bid, closing, 2 * CENT_BTC), ErrorCode.REDUCE_ONLY)
    state.apply(desk.trade(bid, closing, CENT_BTC))
    bob = state.account(3)
    assert bob.positions == {}
    # bought 0.01 and sold 0.01 at 50,000; taker fees 0.25 USD twice
    assert bob.collateral == 10_000 * USD - 2 * 250_000


def test_self_trade_within_one_account_is_rejected(
    desk: Desk, state: ExchangeState, reject
) -> None:
    ask = desk.order(ALICE, BTC, False, CENT_BTC, P50K)
    bid = desk.order(ALICE, BTC, True, CENT_BTC, P50K)
    reject(state, desk.trade(ask, bid), ErrorCode.SELF_TRADE)
    # another subaccount of the same owner is another account: the state lets it trade
    state.apply(desk.deposit(ALICE, 1_000 * USD, subaccount=1))
    other = desk.order(ALICE, BTC, True, CENT_BTC, P50K, subaccount=1)
    state.apply(desk.trade(ask, other))
    assert state.account_of(ALICE.address, 1).size(BTC) == CENT_BTC
    assert state.account(2).size(BTC) == -CENT_BTC


def test_off_step_and_off_tick_are_rejected(desk: Desk, state: ExchangeState, reject) -> None:
    maker = desk.order(ALICE, BTC, False, CENT_BTC, P50K)
    taker = desk.order(BOB, BTC, True, CENT_BTC, P50K)
    reject(state, Trade(desk.tick(), maker, taker, 10**6 + 1, P50K), ErrorCode.OFF_STEP)
    reject(state, Trade(desk.tick(), maker, taker, 0, P50K), ErrorCode.OFF_STEP)
    reject(state, Trade(desk.tick(), maker, taker, CENT_BTC, P50K + 1), ErrorCode.OFF_TICK)
    # orders themselves off step (0.00015 BTC) or off tick (50,000.5 USD)
    off_step = desk.order(ALICE, BTC, False, 15 * 10**5, P50K)
    off_tick = desk.order(BOB, BTC, True, CENT_BTC, P50K + USD // 2)
    reject(state, Trade(desk.tick(), off_step, taker, 10**6, P50K), ErrorCode.OFF_STEP)
    reject(state, Trade(desk.tick(), maker, off_tick, CENT_BTC, P50K), ErrorCode.OFF_TICK)
    # a trade in an unknown market
    bogus = desk.order(ALICE, 7, False, CENT_BTC, P50K)
    reject(state, desk.trade(bogus, taker), ErrorCode.UNKNOWN_MARKET)


def test_bad_signature_rejected_unless_authenticated(
    desk: Desk, state: ExchangeState, reject
) -> None:
    maker = desk.order(ALICE, BTC, False, CENT_BTC, P50K)
    honest = desk.order(BOB, BTC, True, CENT_BTC, P50K)
    forged = SignedOrder(honest.order, MALLORY.sign(honest.hash), honest.hash)
    reject(state, desk.trade(maker, forged), ErrorCode.BAD_SIGNATURE)
    garbage = SignedOrder(honest.order, b"\x00" * 65, honest.hash)
    reject(state, desk.trade(maker, garbage), ErrorCode.BAD_SIGNATURE)
    state.apply(desk.trade(maker, forged), authenticated=True)
    assert state.account(3).size(BTC) == CENT_BTC
    # authentication skips signatures only: every other rule still holds
    again = desk.order(BOB, BTC, True, CENT_BTC, P50K)
    reject(state, desk.trade(maker, again), ErrorCode.OVERFILL, authenticated=True)
    assert state.account(3).collateral == 10_000 * USD - 500 * USD - 250_000


def test_timestamp_before_the_clock_is_rejected(desk: Desk, state: ExchangeState, reject) -> None:
    maker = desk.order(ALICE, BTC, False, CENT_BTC, P50K)
    taker = desk.order(BOB, BTC, True, CENT_BTC, P50K)
    reject(state, Trade(state.clock_ms - 1, maker, taker, CENT_BTC, P50K), ErrorCode.CLOCK)
    state.apply(Trade(state.clock_ms, maker, taker, CENT_BTC, P50K))  # equal time is fine
    assert state.account(2).size(BTC) == -CENT_BTC


def test_unknown_account_and_missing_price(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 1_000 * USD))
    state.apply(desk.deposit(BOB, 1_000 * USD))
    maker = desk.order(ALICE, BTC, False, CENT_BTC, P50K)
    taker = desk.order(BOB, BTC, True, CENT_BTC, P50K)
    reject(state, desk.trade(maker, taker), ErrorCode.NO_PRICE)  # margin needs an oracle
    state.apply(desk.price(BTC, P50K))
    stranger = desk.order(CAROL, BTC, True, CENT_BTC, P50K)
    reject(state, desk.trade(maker, stranger), ErrorCode.UNKNOWN_ACCOUNT)
    state.apply(desk.trade(maker, taker))
    assert state.account(2).collateral == 1_000 * USD + 500 * USD - 100_000


def test_flip_resets_entry_cost(desk: Desk, state: ExchangeState) -> None:
    state.apply(desk.cross(ALICE, BOB, BTC, True, 2 * CENT_BTC, P50K))  # bob long 0.02
    state.apply(desk.cross(CAROL, BOB, BTC, False, 5 * CENT_BTC, 51_000 * USD))
    bob = state.account(3)
    # long 0.02 -> short 0.03 at 51,000: the remaining short cost is 0.03 × 51,000 = 1,530 USD
    assert bob.size(BTC) == -3 * CENT_BTC
    assert bob.positions[BTC].cost == -1_530 * USD
    # bob: -1,000 - 0.50 fee + 2,550 - 1.275 fee
    assert bob.collateral == 10_000 * USD - 1_000 * USD - 500_000 + 2_550 * USD - 1_275_000


def test_rejection_never_touches_state(desk: Desk, state: ExchangeState) -> None:
    before = {i: (a.collateral, dict(a.positions)) for i, a in state.accounts.items()}
    maker = desk.order(ALICE, BTC, False, CENT_BTC, P50K)
    taker = desk.order(BOB, BTC, True, CENT_BTC, P50K, reduce_only=True)
    with pytest.raises(CoreError):
        state.apply(desk.trade(maker, taker))
    assert {i: (a.collateral, dict(a.positions)) for i, a in state.accounts.items()} == before
    assert state.filled(maker.hash) == 0
    assert state.order_fills == {}
