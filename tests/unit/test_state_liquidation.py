"""Liquidations against makers, insurance-fund takeovers and deleveraging, by hand."""

from __future__ import annotations

from perpnet.core.accounts import FEE_POOL_ID, INSURANCE_FUND_ID, SYSTEM_OWNER
from perpnet.core.crypto import PrivateKey
from perpnet.core.errors import ErrorCode
from perpnet.core.events import Deleveraged, Liquidated
from perpnet.core.margin import Risk
from perpnet.core.markets import USD
from perpnet.core.orders import SignedOrder, TimeInForce
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Deleverage, Liquidate
from perpnet.testkit import Desk, trader

ALICE, BOB, CAROL, DAVE = (trader(n) for n in ("alice", "bob", "carol", "dave"))
BTC, ETH, SOL = 0, 1, 2
TENTH_BTC = 10**9  # 0.1 BTC
P50K = 50_000 * USD


def long_btc(desk: Desk) -> ExchangeState:
    """alice (2) makes a 0.2 BTC bid at 50,000 that bob (3) hits; carol (4) has 10,000.

    alice: 1,000 - 10,000 - 2 (maker fee 200 ppm) = -9,002 USD collateral, long 0.2 BTC.
    bob: 10,000 + 10,000 - 5 (taker fee 500 ppm) = 19,995 USD, short 0.2 BTC.
    """
    state = desk.state()
    for key, amount in ((ALICE, 1_000 * USD), (BOB, 10_000 * USD), (CAROL, 10_000 * USD)):
        state.apply(desk.deposit(key, amount))
    state.apply(desk.price(BTC, P50K))
    state.apply(desk.cross(ALICE, BOB, BTC, False, 2 * TENTH_BTC, P50K))
    assert state.account(2).collateral == -9_002 * USD
    assert state.account(3).collateral == 19_995 * USD
    return state


def fund_insurance(desk: Desk, state: ExchangeState, amount: int) -> None:
    """Deposits to (zero address, 0) credit the insurance fund (account 0)."""
    state.apply(desk.deposit(SYSTEM_OWNER, amount))
    assert state.account(INSURANCE_FUND_ID).collateral == amount


def bid(desk: Desk, key: PrivateKey, market: int, size: int, price: int) -> SignedOrder:
    return desk.order(key, market, True, size, price)


def test_oracle_move_puts_account_below_maintenance(desk: Desk, reject) -> None:
    state = long_btc(desk)
    maker = bid(desk, CAROL, BTC, 2 * TENTH_BTC, 46_500 * USD)
    state.apply(desk.price(BTC, 46_500 * USD))
    # value -9,002 + 9,300 = 298 >= maintenance 3 % of 9,300 = 279
    assert state.risk(state.account(2)) == Risk(298 * USD, 465 * USD, 279 * USD)
    tx = Liquidate(desk.tick(), 2, BTC, TENTH_BTC, 46_500 * USD, maker)
    reject(state, tx, ErrorCode.NOT_LIQUIDATABLE)
    state.apply(desk.price(BTC, 46_000 * USD))
    # value -9,002 + 9,200 = 198 < maintenance 276
    risk = state.risk(state.account(2))
    assert risk == Risk(198 * USD, 460 * USD, 276 * USD)
    assert risk.liquidatable
    for account_id in (INSURANCE_FUND_ID, FEE_POOL_ID):
        tx = Liquidate(desk.tick(), account_id, BTC, TENTH_BTC, 0, None)
        reject(state, tx, ErrorCode.NOT_LIQUIDATABLE)


def test_partial_liquidation_against_a_maker(desk: Desk) -> None:
    state = long_btc(desk)
    state.apply(desk.price(BTC, 46_000 * USD))
    maker = bid(desk, CAROL, BTC, 2 * TENTH_BTC, 45_500 * USD)
    events = state.apply(Liquidate(desk.tick(), 2, BTC, TENTH_BTC, 45_500 * USD, maker))
    # 0.1 × 45,500 = 4,550 received; liquidation fee 1 % = 45.50 (value after is 148)
    assert events == (Liquidated(2, 4, BTC, -TENTH_BTC, 4_550 * USD, 45_500_000),)
    alice = state.account(2)
    assert alice.collateral == -9_002 * USD + 4_550 * USD - 45_500_000 == -4_497_500_000
    assert alice.size(BTC) == TENTH_BTC
    # -4,497.5 + 4,600 = 102.5 < 138: still liquidatable
    assert state.risk(alice) == Risk(102_500_000, 230 * USD, 138 * USD)
    carol = state.account(4)
    # carol pays 4,550 and a 200 ppm maker fee of 0.91
    assert carol.collateral == 10_000 * USD - 4_550 * USD - 910_000
    assert (carol.size(BTC), carol.positions[BTC].cost) == (TENTH_BTC, 4_550 * USD)
    assert state.account(INSURANCE_FUND_ID).collateral == 45_500_000
    assert state.account(FEE_POOL_ID).collateral == 7 * USD + 910_000  # 2 + 5 + 0.91
    assert state.filled(maker.hash) == TENTH_BTC


def test_liquidation_fee_capped_by_remaining_value(desk: Desk) -> None:
    state = long_btc(desk)
    state.apply(desk.price(BTC, 46_000 * USD))
    maker = bid(desk, CAROL, BTC, 2 * TENTH_BTC, 45_100 * USD)
    events = state.apply(Liquidate(desk.tick(), 2, BTC, 2 * TENTH_BTC, 45_100 * USD, maker))
    # 0.2 × 45,100 = 9,020: alice keeps 18; the 90.20 fee is capped at those 18
    assert events == (Liquidated(2, 4, BTC, -2 * TENTH_BTC, 9_020 * USD, 18 * USD),)
    alice = state.account(2)
    assert (alice.collateral, alice.positions) == (0, {})
    assert state.account(INSURANCE_FUND_ID).collateral == 18 * USD
    # carol: maker fee 200 ppm × 9,020 = 1.804
    assert state.account(4).collateral == 10_000 * USD - 9_020 * USD - 1_804_000


def test_liquidation_price_limits(desk: Desk, reject) -> None:
    state = long_btc(desk)
    state.apply(desk.price(BTC, 46_000 * USD))
    maker = bid(desk, CAROL, BTC, 2 * TENTH_BTC, 45_100 * USD)
    # bankruptcy: 198 of value over 0.2 BTC -> 9,002 for all (45,010); 4,501 for half
    for size in (TENTH_BTC, 2 * TENTH_BTC):
        tx = Liquidate(desk.tick(), 2, BTC, size, 45_009 * USD, maker)
        reject(state, tx, ErrorCode.PRICE_LIMIT, match="bankruptcy")
    tx = Liquidate(desk.tick(), 2, BTC, TENTH_BTC, 45_200 * USD, maker)
    reject(state, tx, ErrorCode.PRICE_LIMIT, match="maker's limit")
    asks = desk.order(DAVE, BTC, False, TENTH_BTC, 45_100 * USD)
    tx = Liquidate(desk.tick(), 2, BTC, TENTH_BTC, 45_100 * USD, asks)
    reject(state, tx, ErrorCode.INVALID_FIELD, match="wrong side")
    ioc = desk.order(CAROL, BTC, True, TENTH_BTC, 45_100 * USD, tif=TimeInForce.IOC)
    tx = Liquidate(desk.tick(), 2, BTC, TENTH_BTC, 45_100 * USD, ioc)
    reject(state, tx, ErrorCode.INVALID_FIELD, match="resting limit")
    forged = SignedOrder(maker.order, DAVE.sign(maker.hash), maker.hash)
    tx = Liquidate(desk.tick(), 2, BTC, TENTH_BTC, 45_100 * USD, forged)
    reject(state, tx, ErrorCode.BAD_SIGNATURE)
    own = bid(desk, ALICE, BTC, TENTH_BTC, 45_100 * USD)
    reject(
        state, Liquidate(desk.tick(), 2, BTC, TENTH_BTC, 45_100 * USD, own), ErrorCode.SELF_TRADE
    )
    for size, code in ((3 * TENTH_BTC, ErrorCode.INVALID_FIELD), (10**6 + 1, ErrorCode.OFF_STEP)):
        reject(state, Liquidate(desk.tick(), 2, BTC, size, 45_100 * USD, maker), code)
    # exactly the bankruptcy price is allowed: 0.1 × 45,010 = 4,501; fee 45.01 <= value 99
    events = state.apply(Liquidate(desk.tick(), 2, BTC, TENTH_BTC, 45_010 * USD, maker))
    assert events == (Liquidated(2, 4, BTC, -TENTH_BTC, 4_501 * USD, 45_010_000),)
    assert state.account(2).collateral == -4_501 * USD - 45_010_000


def test_liquidation_spread_binds_where_maintenance_exceeds_it(desk: Desk, reject) -> None:
    # SOL maintenance (5 %) is wider than the 4.5 % spread
    state = desk.state()
    state.apply(desk.deposit(ALICE, 100_200_000))
    state.apply(desk.deposit(BOB, 10_000 * USD))
    state.apply(desk.deposit(CAROL, 10_000 * USD))
    state.apply(desk.price(SOL, 100 * USD))
    state.apply(desk.cross(ALICE, BOB, SOL, False, 10**8, 100 * USD))  # alice long 10 SOL
    # 100.2 - 1,000 - 0.2 fee = -900
    assert state.account(2).collateral == -900 * USD
    state.apply(desk.price(SOL, 94_700_000))
    # value -900 + 947 = 47 < 5 % of 947 = 47.35; bankruptcy 900 for 10 SOL (90.000)
    assert state.risk(state.account(2)) == Risk(47 * USD, 94_700_000, 47_350_000)
    maker = bid(desk, CAROL, SOL, 10**8, 91 * USD)
    # spread floor 94.7 × 0.955 = 90.4385: 90.438 is beyond it, 90.439 within
    for price in (90_200_000, 90_438_000):
        tx = Liquidate(desk.tick(), 2, SOL, 10**8, price, maker)
        reject(state, tx, ErrorCode.PRICE_LIMIT, match="spread")
    tx = Liquidate(desk.tick(), 2, SOL, 10**8, 90_438_100, maker)
    reject(state, tx, ErrorCode.OFF_TICK)
    events = state.apply(Liquidate(desk.tick(), 2, SOL, 10**8, 90_439_000, maker))
    # 10 × 90.439 = 904.39 received: 4.39 left, the 9.0439 fee is capped at 4.39
    assert events == (Liquidated(2, 4, SOL, -(10**8), 904_390_000, 4_390_000),)
    assert state.account(2).collateral == 0
    assert state.account(INSURANCE_FUND_ID).collateral == 4_390_000
    # carol: 200 ppm × 904.39 = 0.180878
    assert state.account(4).collateral == 10_000 * USD - 904_390_000 - 180_878


def test_short_liquidation_against_an_ask(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 100_200_000))
    state.apply(desk.deposit(BOB, 10_000 * USD))
    state.apply(desk.deposit(CAROL, 10_000 * USD))
    state.apply(desk.price(SOL, 100 * USD))
    state.apply(desk.cross(ALICE, BOB, SOL, True, 10**8, 100 * USD))  # alice short 10 SOL
    assert state.account(2).collateral == 1_100 * USD  # 100.2 + 1,000 - 0.2
    state.apply(desk.price(SOL, 105_300_000))
    # value 1,100 - 1,053 = 47 < 52.65; bankrupt at paying 1,100 (110.000 per SOL)
    assert state.risk(state.account(2)) == Risk(47 * USD, 105_300_000, 52_650_000)
    ask = desk.order(CAROL, SOL, False, 10**8, 108 * USD)
    tx = Liquidate(desk.tick(), 2, SOL, 10**8, 107_999_000, ask)
    reject(state, tx, ErrorCode.PRICE_LIMIT, match="maker's limit")
    tx = Liquidate(desk.tick(), 2, SOL, 10**8, 110_001_000, ask)
    reject(state, tx, ErrorCode.PRICE_LIMIT, match="bankruptcy")
    events = state.apply(Liquidate(desk.tick(), 2, SOL, 10**8, 108 * USD, ask))
    # pays 1,080; 20 left; fee 1 % × 1,080 = 10.80
    assert events == (Liquidated(2, 4, SOL, 10**8, -1_080 * USD, 10_800_000),)
    assert state.account(2).collateral == 9_200_000
    assert state.account(4).collateral == 10_000 * USD + 1_080 * USD - 216_000


def test_insurance_fund_takeover_at_bankruptcy_price(desk: Desk, reject) -> None:
    state = long_btc(desk)
    state.apply(desk.price(BTC, 46_000 * USD))
    reject(
        state,
        Liquidate(desk.tick(), 2, BTC, TENTH_BTC, 46_000 * USD, None),
        ErrorCode.INVALID_FIELD,
    )
    events = state.apply(Liquidate(desk.tick(), 2, BTC, 2 * TENTH_BTC, 0, None))
    # bankruptcy: the fund pays 9,002 (45,010/BTC) and keeps the 198 of value, no fee
    assert events == (Liquidated(2, INSURANCE_FUND_ID, BTC, -2 * TENTH_BTC, 9_002 * USD, 0),)
    alice = state.account(2)
    assert (alice.collateral, alice.positions) == (0, {})
    fund = state.account(INSURANCE_FUND_ID)
    assert fund.collateral == -9_002 * USD
    assert (fund.size(BTC), fund.positions[BTC].cost) == (2 * TENTH_BTC, 9_002 * USD)
    assert state.risk(fund).value == 198 * USD


def test_takeover_in_thirds_rounds_by_one_quantum(desk: Desk) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 100 * USD))
    state.apply(desk.deposit(BOB, 10_000 * USD))
    state.apply(desk.price(BTC, P50K))
    state.apply(desk.cross(ALICE, BOB, BTC, False, 3 * 10**8, P50K))  # alice long 0.03
    state.apply(desk.price(BTC, 48_000 * USD))
    # collateral 100 - 1,500 - 0.30 = -1,400.3; value 39.7 < maintenance 43.2
    receipts = []
    for _ in range(3):
        (event,) = state.apply(Liquidate(desk.tick(), 2, BTC, 10**8, 0, None))
        assert isinstance(event, Liquidated)
        receipts.append(event.receipt)
    # shares round against the account: ceil(39,700,000 / 3) = 13,233,334 -> 480 - 13.233334
    # = 466.766666; then half of 26,466,666 -> 13,233,333 twice
    assert receipts == [466_766_666, 466_766_667, 466_766_667]
    assert sum(receipts) == 1_400_300_000
    assert state.account(2).collateral == 0
    assert state.risk(state.account(INSURANCE_FUND_ID)) == Risk(39_700_000, 72 * USD, 43_200_000)


def test_bankruptcy_share_follows_maintenance_across_markets(desk: Desk) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 300 * USD))
    state.apply(desk.deposit(BOB, 10_000 * USD))
    state.apply(desk.price(BTC, P50K))
    state.apply(desk.price(ETH, 2_000 * USD))
    state.apply(desk.cross(ALICE, BOB, BTC, False, 4 * 10**8, P50K))  # long 0.04 BTC
    state.apply(desk.cross(ALICE, BOB, ETH, False, 10**9, 2_000 * USD))  # long 1 ETH
    state.apply(desk.price(BTC, 46_000 * USD))
    state.apply(desk.price(ETH, 1_950 * USD))
    # collateral 300 - 2,000 - 2,000 - 0.4 - 0.4 = -3,700.8; value -3,700.8 + 1,840 + 1,950
    assert state.risk(state.account(2)) == Risk(89_200_000, 189_500_000, 113_700_000)
    (event,) = state.apply(Liquidate(desk.tick(), 2, BTC, 4 * 10**8, 0, None))
    # BTC keeps 89.2 × 55.2 / 113.7 = 43.305540.., rounded up (against the account)
    assert isinstance(event, Liquidated)
    assert event.receipt == 1_840 * USD - 43_305_541
    # ETH keeps the rest: 89.2 - 43.305541 = 45.894459, against maintenance 58.5
    assert state.risk(state.account(2)) == Risk(45_894_459, 97_500_000, 58_500_000)
    (event,) = state.apply(Liquidate(desk.tick(), 2, ETH, 10**9, 0, None))
    assert isinstance(event, Liquidated)
    assert event.receipt == 1_950 * USD - 45_894_459
    assert state.account(2).collateral == 0
    assert state.risk(state.account(INSURANCE_FUND_ID)).value == 89_200_000


def test_takeover_needs_a_solvent_fund(desk: Desk, reject) -> None:
    state = long_btc(desk)
    state.apply(desk.price(BTC, 44_000 * USD))
    # value -9,002 + 8,800 = -202: the fund would pay 9,002 for 8,800 of BTC
    assert state.risk(state.account(2)).value == -202 * USD
    takeover = Liquidate(desk.tick(), 2, BTC, 2 * TENTH_BTC, 0, None)
    reject(state, takeover, ErrorCode.INSURANCE_INSUFFICIENT)
    fund_insurance(desk, state, 202 * USD - 1)
    takeover = Liquidate(desk.tick(), 2, BTC, 2 * TENTH_BTC, 0, None)
    reject(state, takeover, ErrorCode.INSURANCE_INSUFFICIENT)
    state.apply(desk.deposit(SYSTEM_OWNER, 1))
    state.apply(Liquidate(desk.tick(), 2, BTC, 2 * TENTH_BTC, 0, None))
    fund = state.account(INSURANCE_FUND_ID)
    assert fund.collateral == 202 * USD - 9_002 * USD
    assert state.risk(fund).value == 0
    assert state.account(2).collateral == 0


def test_deleverage_a_bankrupt_account(desk: Desk, reject) -> None:
    state = long_btc(desk)
    state.apply(desk.price(BTC, 46_000 * USD))
    # not bankrupt (value 198 >= 0): the insurance path applies
    reject(state, Deleverage(desk.tick(), 2, 3, BTC, TENTH_BTC), ErrorCode.NOT_DELEVERAGEABLE)
    state.apply(desk.price(BTC, 44_000 * USD))
    # carol takes 0.1 long from bob: carol is on alice's side, not an offset
    state.apply(desk.cross(BOB, CAROL, BTC, True, TENTH_BTC, 44_000 * USD))
    for offset in (4, 2, INSURANCE_FUND_ID):
        tx = Deleverage(desk.tick(), 2, offset, BTC, TENTH_BTC)
        reject(state, tx, ErrorCode.NOT_DELEVERAGEABLE)
    # bob is now short 0.3, enough for 0.2
    tx = Deleverage(desk.tick(), 2, 3, BTC, 2 * TENTH_BTC)
    bob_before = state.account(3).collateral
    events = state.apply(tx)
    # at the bankruptcy price: 9,002 for 0.2 BTC (45,010, above the 44,000 oracle)
    assert events == (Deleveraged(2, 3, BTC, -2 * TENTH_BTC, 9_002 * USD),)
    alice = state.account(2)
    assert (alice.collateral, alice.positions) == (0, {})
    bob = state.account(3)
    assert bob.collateral == bob_before - 9_002 * USD
    assert bob.size(BTC) == -TENTH_BTC
    assert state.account(INSURANCE_FUND_ID).collateral == 0


def test_deleverage_refused_when_the_fund_can_cover(desk: Desk, reject) -> None:
    state = long_btc(desk)
    state.apply(desk.price(BTC, 44_000 * USD))
    # half the position costs the fund 4,501 for 4,400 of BTC: 101 covers it, 202 the whole
    fund_insurance(desk, state, 101 * USD)
    half = Deleverage(desk.tick(), 2, 3, BTC, TENTH_BTC)
    reject(state, half, ErrorCode.NOT_DELEVERAGEABLE, match="insurance fund can cover")
    events = state.apply(Deleverage(desk.tick(), 2, 3, BTC, 2 * TENTH_BTC))
    assert events == (Deleveraged(2, 3, BTC, -2 * TENTH_BTC, 9_002 * USD),)
    # bob bought back his 0.2 short at 45,010: 19,995 - 9,002
    assert state.account(3).collateral == 10_993 * USD
    assert state.account(3).positions == {}
    assert state.account(INSURANCE_FUND_ID).collateral == 101 * USD


def test_liquidation_needs_a_fresh_oracle(desk: Desk, reject) -> None:
    state = long_btc(desk)
    state.apply(desk.price(BTC, 46_000 * USD))
    limit = state.price_times[BTC] + desk.config.max_price_age_ms
    ok = Liquidate(limit, 2, BTC, TENTH_BTC, 0, None)
    stale = Liquidate(limit + 1, 2, BTC, TENTH_BTC, 0, None)
    reject(state, stale, ErrorCode.ORACLE_STALE)
    reject(state, Deleverage(limit + 1, 2, 3, BTC, TENTH_BTC), ErrorCode.ORACLE_STALE)
    state.apply(ok)
    assert state.account(2).size(BTC) == TENTH_BTC
