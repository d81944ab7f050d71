"""Margin (value, tiers, free collateral, cross vs isolated), funding and oracle ticks."""

from __future__ import annotations

import pytest

from perpnet.core import margin
from perpnet.core.crypto import PrivateKey
from perpnet.core.errors import ErrorCode
from perpnet.core.events import FundingApplied, PriceUpdated
from perpnet.core.margin import Risk
from perpnet.core.markets import USD, MarketSet
from perpnet.core.orders import Order, TimeInForce
from perpnet.core.state import ExchangeState
from perpnet.core.txs import FundingTick, OraclePriceTick, SignedPrice
from perpnet.testkit import ORACLE_KEYS, Desk, config, trader

ALICE, BOB, CAROL = (trader(n) for n in ("alice", "bob", "carol"))
BTC, ETH, SOL = 0, 1, 2
CENT_BTC = 10**8  # 0.01 BTC
P50K = 50_000 * USD


def funded(desk: Desk, *deposits: tuple[PrivateKey, int]) -> ExchangeState:
    state = desk.state()
    for key, amount in deposits:
        state.apply(desk.deposit(key, amount))
    state.apply(desk.price(BTC, P50K))
    state.apply(desk.price(ETH, 2_000 * USD))
    return state


def buy(desk: Desk, state: ExchangeState, taker: PrivateKey, maker: PrivateKey, **kw) -> None:
    """`taker` buys from `maker`'s resting ask: market, size, price, subaccount for the taker."""
    market, size, price = kw["market"], kw["size"], kw["price"]
    ask = desk.order(maker, market, False, size, price)
    bid = desk.order(
        taker, market, True, size, price, tif=TimeInForce.IOC, subaccount=kw.get("sub", 0)
    )
    state.apply(desk.trade(ask, bid))


# ----------------------------------------------------------------------------- margin


def test_account_value_requirements_and_free_collateral(desk: Desk) -> None:
    state = funded(desk, (ALICE, 1_000 * USD), (BOB, 100_000 * USD))
    buy(desk, state, ALICE, BOB, market=BTC, size=10 * CENT_BTC, price=P50K)
    alice = state.account(2)
    # paid 0.1 × 50,000 = 5,000 USD and a 500 ppm taker fee of 2.50 USD
    assert alice.collateral == 1_000 * USD - 5_000 * USD - 2_500_000 == -4_002_500_000
    # value -4,002.5 + 5,000 = 997.5; initial 5 % of 5,000 = 250; maintenance 3 % = 150
    risk = state.risk(alice)
    assert risk == Risk(997_500_000, 250_000_000, 150_000_000)
    assert risk.free_collateral == 747_500_000
    assert not risk.liquidatable
    state.apply(desk.price(BTC, 48_000 * USD))
    # value -4,002.5 + 4,800 = 797.5; initial 5 % of 4,800 = 240; maintenance 144
    assert state.risk(state.account(2)) == Risk(797_500_000, 240_000_000, 144_000_000)


def test_requirement_tiers_by_hand() -> None:
    btc, sol = MarketSet().get(BTC), MarketSet().get(SOL)
    btc_size, p50k = 10**10, 50_000 * USD
    # 30 BTC at 50,000 (1.5M): 5 % of 1.5M + (7.5 − 5) % of the 15 BTC past 15 (750k)
    #   = 75,000 + 18,750 = 93,750; maintenance 3 % + 1.5 %: 45,000 + 11,250 = 56,250
    assert btc.requirement(30 * btc_size, p50k, True) == 93_750 * USD
    assert btc.requirement(-30 * btc_size, p50k, False) == 56_250 * USD
    # 100 BTC (5M): 250,000 + 2.5 % of 85 BTC (106,250) + 5 % of the 25 past 75 (62,500)
    #   = 418,750; maintenance 150,000 + 63,750 + 3 % of 1.25M (37,500) = 251,250
    assert btc.requirement(100 * btc_size, p50k, True) == 418_750 * USD
    assert btc.requirement(100 * btc_size, p50k, False) == 251_250 * USD
    # exactly 15 BTC stays in the first tier; one step more (0.0001 BTC, 5 USD) pays
    # 5 % of 750,005 (37,500.25) + 2.5 % of 5 (0.125): each part rounded up on its own
    assert btc.requirement(15 * btc_size, p50k, True) == 37_500 * USD
    assert btc.requirement(15 * btc_size + 10**6, p50k, True) == 37_500 * USD + 375_000
    assert btc.requirement(1, p50k, False) == 1  # 5 quantums × 3 % rounds up
    assert btc.requirement(0, p50k, True) == 0
    # SOL: 10 % / 5 %, then 15 % / 7.5 % past 2,500 SOL: 3,000 SOL at 100 (300k)
    #   -> 30,000 + 5 % of 50,000 = 32,500; maintenance 15,000 + 1,250 = 16,250
    sol_size, p100 = 10**7, 100 * USD
    assert sol.requirement(3_000 * sol_size, p100, True) == 32_500 * USD
    assert sol.requirement(3_000 * sol_size, p100, False) == 16_250 * USD


def test_position_crossing_a_tier_in_an_account(desk: Desk) -> None:
    state = funded(desk, (ALICE, 100_000 * USD), (BOB, 100_000 * USD))
    buy(desk, state, ALICE, BOB, market=BTC, size=25 * 10**10, price=P50K)
    # 25 BTC × 50,000 = 1.25M notional; taker fee 625 USD; maker fee 250 USD
    # initial 62,500 + 10 BTC past 15 × 50,000 × 2.5 % (12,500) = 75,000;
    # maintenance 37,500 + 500,000 × 1.5 % (7,500) = 45,000
    assert state.risk(state.account(2)) == Risk(99_375 * USD, 75_000 * USD, 45_000 * USD)
    assert state.risk(state.account(3)) == Risk(99_750 * USD, 75_000 * USD, 45_000 * USD)
    market = state.markets.get(BTC)
    assert market.requirement(25 * 10**10, P50K, True) == 75_000 * USD


def test_initial_margin_boundary(desk: Desk, reject) -> None:
    state = funded(desk, (ALICE, 101 * USD), (BOB, 10_000 * USD), (CAROL, 101 * USD - 1))
    # 0.04 BTC × 50,000 = 2,000 notional: initial 100 USD, taker fee 1 USD
    buy(desk, state, ALICE, BOB, market=BTC, size=4 * CENT_BTC, price=P50K)
    risk = state.risk(state.account(2))
    assert risk == Risk(100 * USD, 100 * USD, 60 * USD)
    assert risk.free_collateral == 0
    ask = desk.order(BOB, BTC, False, 4 * CENT_BTC, P50K)
    bid = desk.order(CAROL, BTC, True, 4 * CENT_BTC, P50K)
    reject(state, desk.trade(ask, bid), ErrorCode.INSUFFICIENT_MARGIN, match="account 4")


def test_reducing_trade_needs_only_maintenance(desk: Desk, reject) -> None:
    state = funded(desk, (ALICE, 101 * USD), (BOB, 10_000 * USD), (CAROL, 10_000 * USD))
    buy(desk, state, ALICE, BOB, market=BTC, size=4 * CENT_BTC, price=P50K)
    state.apply(desk.price(BTC, 49_000 * USD))
    # collateral -1,900; value -1,900 + 1,960 = 60; initial 98; maintenance 58.8
    assert state.risk(state.account(2)) == Risk(60 * USD, 98 * USD, 58_800_000)
    more = desk.order(BOB, BTC, False, CENT_BTC, 49_000 * USD)
    add = desk.order(ALICE, BTC, True, CENT_BTC, 49_000 * USD)
    reject(state, desk.trade(more, add), ErrorCode.INSUFFICIENT_MARGIN)
    bid = desk.order(CAROL, BTC, True, CENT_BTC, 49_000 * USD)
    cut = desk.order(ALICE, BTC, False, CENT_BTC, 49_000 * USD)
    state.apply(desk.trade(bid, cut))
    # -1,900 + 490 - 0.245 fee = -1,410.245; value + 0.03 × 49,000 = 59.755 >= 3 % of 1,470
    alice = state.account(2)
    assert alice.collateral == -1_410_245_000
    assert state.risk(alice) == Risk(59_755_000, 73_500_000, 44_100_000)


def test_below_maintenance_partial_reduce_rejected_full_close_allowed(desk: Desk, reject) -> None:
    state = funded(desk, (ALICE, 101 * USD), (BOB, 10_000 * USD), (CAROL, 10_000 * USD))
    buy(desk, state, ALICE, BOB, market=BTC, size=4 * CENT_BTC, price=P50K)
    state.apply(desk.price(BTC, 48_500 * USD))
    # value -1,900 + 1,940 = 40 < maintenance 58.2
    assert state.risk(state.account(2)).liquidatable
    bid = desk.order(CAROL, BTC, True, 4 * CENT_BTC, 48_500 * USD)
    # selling 0.01 leaves -1,415.2425 + 1,455 = 39.7575 < 3 % of 1,455 = 43.65
    part = desk.order(ALICE, BTC, False, CENT_BTC, 48_500 * USD)
    reject(state, desk.trade(bid, part), ErrorCode.INSUFFICIENT_MARGIN)
    whole = desk.order(ALICE, BTC, False, 4 * CENT_BTC, 48_500 * USD)
    state.apply(desk.trade(bid, whole))
    # -1,900 + 1,940 - 0.97 fee = 39.03 USD, flat
    alice = state.account(2)
    assert (alice.collateral, alice.positions) == (39_030_000, {})


def test_cross_margin_shares_collateral_across_markets(desk: Desk, reject) -> None:
    state = funded(desk, (ALICE, 200 * USD), (BOB, 100_000 * USD))
    buy(desk, state, ALICE, BOB, market=BTC, size=4 * CENT_BTC, price=P50K)
    # value 199, initial 100: 1 ETH (2,000 notional, initial 100, fee 1) does not fit
    ask = desk.order(BOB, ETH, False, 10**9, 2_000 * USD)
    bid = desk.order(ALICE, ETH, True, 10**9, 2_000 * USD)
    reject(state, desk.trade(ask, bid), ErrorCode.INSUFFICIENT_MARGIN)
    buy(desk, state, ALICE, BOB, market=ETH, size=9 * 10**8, price=2_000 * USD)
    # -1,801 - 1,800 - 0.9 = -3,601.9; value 198.1; initial 100 + 90; maintenance 60 + 54
    alice = state.account(2)
    assert alice.collateral == -3_601_900_000
    risk = state.risk(alice)
    assert risk == Risk(198_100_000, 190 * USD, 114 * USD)
    assert risk.free_collateral == 8_100_000
    state.apply(desk.price(BTC, 48_000 * USD))  # BTC loses 80 USD
    state.apply(desk.price(ETH, 2_100 * USD))  # ETH gains 90 USD
    # value -3,601.9 + 1,920 + 1,890 = 208.1; initial 96 + 94.5; maintenance 57.6 + 56.7
    assert state.risk(state.account(2)) == Risk(208_100_000, 190_500_000, 114_300_000)


def test_isolated_subaccount_holds_one_market_on_its_own_collateral(desk: Desk, reject) -> None:
    state = funded(desk, (BOB, 100_000 * USD), (ALICE, 10_000 * USD))
    state.apply(desk.deposit(ALICE, 200 * USD, subaccount=128))
    state.apply(desk.deposit(ALICE, 50 * USD, subaccount=129))
    buy(desk, state, ALICE, BOB, market=BTC, size=4 * CENT_BTC, price=P50K, sub=128)
    iso = state.account_of(ALICE.address, 128)
    assert state.risk(iso) == Risk(199 * USD, 100 * USD, 60 * USD)
    eth_ask = desk.order(BOB, ETH, False, 10**8, 2_000 * USD)
    eth_bid = desk.order(ALICE, ETH, True, 10**8, 2_000 * USD, subaccount=128)
    reject(state, desk.trade(eth_ask, eth_bid), ErrorCode.ISOLATED_MARKET)
    # 129 holds 50 USD: 0.04 BTC needs 100 even though subaccount 0 holds 10,000
    ask = desk.order(BOB, BTC, False, 4 * CENT_BTC, P50K)
    poor = desk.order(ALICE, BTC, True, 4 * CENT_BTC, P50K, subaccount=129)
    reject(state, desk.trade(ask, poor), ErrorCode.INSUFFICIENT_MARGIN)
    # the same trade in cross subaccount 0 fits, and leaves the isolated ones alone
    buy(desk, state, ALICE, BOB, market=BTC, size=4 * CENT_BTC, price=P50K)
    state.apply(desk.price(BTC, 45_000 * USD))
    # isolated 128: -1,801 + 0.04 × 45,000 = -1 (underwater, its loss stays there)
    assert state.risk(state.account_of(ALICE.address, 128)).value == -1 * USD
    assert state.risk(state.account_of(ALICE.address, 0)).value == 9_799 * USD
    assert state.account_of(ALICE.address, 129).collateral == 50 * USD


def test_isolated_subaccount_switches_market_once_flat(desk: Desk) -> None:
    state = funded(desk, (BOB, 100_000 * USD))
    state.apply(desk.deposit(ALICE, 500 * USD, subaccount=200))
    buy(desk, state, ALICE, BOB, market=BTC, size=4 * CENT_BTC, price=P50K, sub=200)
    bid = desk.order(BOB, BTC, True, 4 * CENT_BTC, P50K)
    close = desk.order(ALICE, BTC, False, 4 * CENT_BTC, P50K, subaccount=200)
    state.apply(desk.trade(bid, close))
    buy(desk, state, ALICE, BOB, market=ETH, size=10**8, price=2_000 * USD, sub=200)
    iso = state.account_of(ALICE.address, 200)
    # 500 - 1 - 1 (BTC taker fees) - 200 - 0.1 (0.1 ETH and its fee)
    assert iso.collateral == 500 * USD - 2 * USD - 200 * USD - 100_000
    assert list(iso.positions) == [ETH]


def test_worst_case_initial_with_open_orders(desk: Desk) -> None:
    state = funded(desk, (ALICE, 200 * USD), (BOB, 100_000 * USD))
    buy(desk, state, ALICE, BOB, market=BTC, size=4 * CENT_BTC, price=P50K)
    owner = ALICE.address
    orders = [
        Order(owner, 0, BTC, True, 2 * CENT_BTC, 50_500 * USD),
        Order(owner, 0, BTC, False, 6 * CENT_BTC, 49_000 * USD),
        Order(owner, 0, BTC, False, 4 * CENT_BTC, 40_000 * USD, reduce_only=True),  # ignored
        Order(owner, 0, ETH, True, 5 * 10**8, 2_000 * USD),
        Order(owner, 0, ETH, False, 10**9, 2_100 * USD),
    ]
    alice = state.account(2)
    wc = margin.worst_case_initial(alice, orders, state.markets, state.prices, state.funding_index)
    # base: value 199, initial 100, maintenance 60 (long 0.04 BTC, collateral -1,801)
    # BTC buys: pay 1,010 for 1,000 of mark (loss 10); 0.06 long needs 150 (+50) -> 60
    # BTC sells: receive 2,940 for -3,000 of mark (loss 60); 0.02 short needs 50 (-50) -> 10
    # ETH buys: loss 0, 0.5 ETH needs 50 -> 50; ETH sells: gain 100, needs 100 -> 0
    assert wc == Risk(189 * USD, 200 * USD, 60 * USD)
    assert wc.free_collateral == -11 * USD
    no_orders = margin.worst_case_initial(
        alice, [], state.markets, state.prices, state.funding_index
    )
    assert no_orders == state.risk(alice) == Risk(199 * USD, 100 * USD, 60 * USD)


# ----------------------------------------------------------------------------- funding


def test_funding_index_deltas_by_hand(desk: Desk, reject) -> None:
    state = funded(desk)
    state.apply(desk.price(SOL, 150 * USD))
    events = state.apply(desk.funding((BTC, 100_000), (ETH, 12_345), (SOL, 1_000_000)))
    # BTC: 1e5 × 5e10 × 1e6 / (1e10 × 1e9) = 500 (0.01 % of a 5 USD lot)
    # ETH: 12,345 × 2e9 × 1e6 / (1e9 × 1e9) = 24.69 -> 24
    # SOL: 1e6 × 1.5e8 × 1e5 / (1e7 × 1e9) = 1,500 (0.1 % of a 1.50 USD lot)
    assert events == (
        FundingApplied(BTC, 500, 500),
        FundingApplied(ETH, 24, 24),
        FundingApplied(SOL, 1_500, 1_500),
    )
    # -33,333 × 5e10 × 1e6 / 1e19 = -166.665 truncates toward zero to -166
    state.apply(desk.price(BTC, P50K))  # funding needs a fresh price
    assert state.apply(desk.funding((BTC, -33_333))) == (FundingApplied(BTC, -166, 334),)
    state.apply(desk.price(ETH, 2_000 * USD))
    assert state.apply(desk.funding((ETH, -12_345))) == (FundingApplied(ETH, -24, 0),)
    assert state.funding_index == {BTC: 334, ETH: 0, SOL: 1_500}


def test_funding_payments_are_lazy_and_zero_sum(desk: Desk) -> None:
    state = funded(desk, (ALICE, 1_000 * USD), (BOB, 1_000 * USD), (CAROL, 1_000 * USD))

    def conserved() -> int:
        return sum(
            a.collateral - margin.pending_funding(a, state.funding_index, state.markets)
            for a in state.iter_accounts()
        )

    buy(desk, state, ALICE, BOB, market=BTC, size=CENT_BTC, price=P50K)  # 100 lots
    alice_before, bob_before = state.account(2).collateral, state.account(3).collateral
    state.apply(desk.funding((BTC, 100_000)))  # +500 per lot: longs pay
    # nothing moved yet, but the risk view counts 100 lots × 500 = 0.05 USD
    assert state.account(2).collateral == alice_before
    assert margin.pending_funding(state.account(2), state.funding_index, state.markets) == 50_000
    assert margin.pending_funding(state.account(3), state.funding_index, state.markets) == -50_000
    assert state.risk(state.account(2)).value == alice_before + 500 * USD - 50_000
    assert state.risk(state.account(3)).value == bob_before - 500 * USD + 50_000
    assert conserved() == 3_000 * USD
    # carol opens a short after the tick: she owes nothing for it
    buy(desk, state, BOB, CAROL, market=BTC, size=2 * CENT_BTC, price=P50K)
    assert state.account(4).positions[BTC].funding_index == 500
    # bob's trade settled his funding first: +0.05 USD, then the trade
    assert state.account(3).positions[BTC].funding_index == 500
    assert state.account(3).collateral == bob_before + 50_000 - 1_000 * USD - 500_000
    state.apply(desk.price(BTC, P50K))  # funding needs a fresh price
    state.apply(desk.funding((BTC, -200_000)))  # 2e5 × 5e10 × 1e6 / 1e19 = -1,000 per lot
    assert conserved() == 3_000 * USD
    # alice: 100 lots × (-500) = +0.05 USD net; settle it with a withdrawal of 1 USD
    state.apply(desk.withdraw(ALICE, USD, nonce=0))
    alice = state.account(2)
    assert alice.collateral == alice_before - 50_000 + 100_000 - USD
    assert alice.positions[BTC].funding_index == -500
    # bob long 0.01 from index 500: receives 100 × 1,000; carol short 200 lots pays 200,000
    assert margin.pending_funding(state.account(3), state.funding_index, state.markets) == -100_000
    assert margin.pending_funding(state.account(4), state.funding_index, state.markets) == 200_000
    assert conserved() == 3_000 * USD - USD


def test_funding_clamp_is_atomic(desk: Desk, reject) -> None:
    state = funded(desk)
    t = desk.tick(60_000)
    reject(state, FundingTick(t, ((BTC, 10_000_001),)), ErrorCode.FUNDING_CLAMP)
    reject(state, FundingTick(t, ((BTC, 100), (ETH, -10_000_001))), ErrorCode.FUNDING_CLAMP)
    assert state.funding_index[BTC] == 0
    # exactly 1 %: 1e7 × 5e10 × 1e6 / 1e19 = 50,000 per lot (1 % of 5 USD)
    assert state.apply(FundingTick(t, ((BTC, 10_000_000),))) == (
        FundingApplied(BTC, 50_000, 50_000),
    )


def test_funding_interval_and_inputs(desk: Desk, reject) -> None:
    state = funded(desk)
    t0 = desk.tick()
    reject(state, FundingTick(t0, ((SOL, 1),)), ErrorCode.NO_PRICE)
    reject(state, FundingTick(t0, ((9, 1),)), ErrorCode.UNKNOWN_MARKET)
    reject(state, FundingTick(t0, ((BTC, 1), (BTC, 1))), ErrorCode.INVALID_FIELD)
    state.apply(FundingTick(t0, ((BTC, 200),)))  # the first tick may come at any time
    assert state.last_funding_ms == t0
    assert state.funding_index[BTC] == 1  # 200 × 5e10 × 1e6 / 1e19 = 1
    reject(state, FundingTick(t0 + 59_999, ((BTC, 200),)), ErrorCode.CLOCK)
    state.apply(FundingTick(t0 + 60_000, ((BTC, 199),)))  # 0.995 truncates to 0
    assert state.funding_index[BTC] == 1
    assert state.last_funding_ms == t0 + 60_000


# ----------------------------------------------------------------------------- oracle


def observations(
    desk: Desk, market: int, ts: int, *entries: tuple[PrivateKey, int, int]
) -> tuple[SignedPrice, ...]:
    """(key, price, age_ms) -> signed observations taken `age_ms` before `ts`."""
    return tuple(
        SignedPrice.create(key, market, price, ts - age, desk.config.domain)
        for key, price, age in entries
    )


def test_oracle_price_is_the_median_of_signed_observations(desk: Desk, reject) -> None:
    state = desk.state()
    k0, k1, k2 = ORACLE_KEYS
    ts = desk.tick(1_000)
    obs = observations(desk, BTC, ts, (k0, 50_100 * USD, 0), (k1, 49_000 * USD, 5), (k2, P50K, 10))
    reject(state, OraclePriceTick(ts, BTC, 50_100 * USD, obs), ErrorCode.ORACLE_QUORUM)
    reject(state, OraclePriceTick(ts, BTC, 49_000 * USD, obs), ErrorCode.ORACLE_QUORUM)
    assert state.apply(OraclePriceTick(ts, BTC, P50K, obs)) == (PriceUpdated(BTC, P50K),)
    # a price is as old as its oldest observation (here 10 ms before the tick)
    assert (state.prices[BTC], state.price_times[BTC]) == (P50K, ts - 10)
    # with two observations the lower of the middle pair is the median
    ts = desk.tick()
    two = observations(desk, BTC, ts, (k0, 50_100 * USD, 0), (k2, 49_000 * USD, 0))
    reject(state, OraclePriceTick(ts, BTC, 50_100 * USD, two), ErrorCode.ORACLE_QUORUM)
    state.apply(OraclePriceTick(ts, BTC, 49_000 * USD, two))
    assert state.prices[BTC] == 49_000 * USD


def test_oracle_quorum_and_signers(desk: Desk, reject) -> None:
    state = desk.state()
    k0, k1, _ = ORACLE_KEYS
    ts = desk.tick(1_000)
    one = observations(desk, BTC, ts, (k0, P50K, 0))
    reject(state, OraclePriceTick(ts, BTC, P50K, one), ErrorCode.ORACLE_QUORUM)
    dup = observations(desk, BTC, ts, (k0, P50K, 0), (k0, P50K, 1))
    reject(state, OraclePriceTick(ts, BTC, P50K, dup), ErrorCode.ORACLE_QUORUM, match="duplicate")
    stranger = observations(desk, BTC, ts, (k0, P50K, 0), (k1, P50K, 0), (ALICE, P50K, 0))
    reject(state, OraclePriceTick(ts, BTC, P50K, stranger), ErrorCode.ORACLE_QUORUM)
    zero = observations(desk, BTC, ts, (k0, 0, 0), (k1, 0, 0))
    reject(state, OraclePriceTick(ts, BTC, 0, zero), ErrorCode.ORACLE_QUORUM)
    reject(state, OraclePriceTick(ts, 5, P50K, one), ErrorCode.UNKNOWN_MARKET)
    assert state.prices == {}


def test_oracle_staleness_window(desk: Desk, reject) -> None:
    state = desk.state()
    k0, k1, _ = ORACLE_KEYS
    age = desk.config.max_price_age_ms
    ts = desk.tick(1_000_000)
    stale = observations(desk, BTC, ts, (k0, P50K, 0), (k1, P50K, age + 1))
    reject(state, OraclePriceTick(ts, BTC, P50K, stale), ErrorCode.ORACLE_STALE)
    future = observations(desk, BTC, ts, (k0, P50K, 0), (k1, P50K, -1))
    reject(state, OraclePriceTick(ts, BTC, P50K, future), ErrorCode.ORACLE_STALE)
    edge = observations(desk, BTC, ts, (k0, P50K, age), (k1, P50K, 0))
    state.apply(OraclePriceTick(ts, BTC, P50K, edge))  # exactly the age limit is still fresh
    assert state.prices[BTC] == P50K


def test_oracle_bad_signature(desk: Desk, reject) -> None:
    state = desk.state()
    k0, k1, _ = ORACLE_KEYS
    ts = desk.tick(1_000)
    good = observations(desk, BTC, ts, (k0, P50K, 0), (k1, P50K, 0))
    lie = SignedPrice(k1.address, 60_000 * USD, ts, good[1].signature)  # resigned price
    tick = OraclePriceTick(ts, BTC, 60_000 * USD, (good[0], lie))
    # median of [50,000, 60,000] is 50,000: the forged price cannot even be proposed
    reject(state, tick, ErrorCode.ORACLE_QUORUM)
    tick = OraclePriceTick(ts, BTC, P50K, (good[0], lie))
    reject(state, tick, ErrorCode.BAD_SIGNATURE)
    other_market = observations(desk, ETH, ts, (k0, P50K, 0), (k1, P50K, 0))
    reject(state, OraclePriceTick(ts, BTC, P50K, other_market), ErrorCode.BAD_SIGNATURE)
    state.apply(tick, authenticated=True)
    assert state.prices[BTC] == P50K


@pytest.mark.parametrize("quorum", [1, 3])
def test_oracle_quorum_is_configurable(quorum: int, reject) -> None:
    desk = Desk(config(quorum=quorum))
    state = desk.state()
    two = desk.price(BTC, P50K, signers=2)
    if quorum == 1:
        state.apply(two)
        assert state.prices[BTC] == P50K
    else:
        reject(state, two, ErrorCode.ORACLE_QUORUM)
        state.apply(desk.price(BTC, P50K, signers=3))
        assert state.prices[BTC] == P50K
