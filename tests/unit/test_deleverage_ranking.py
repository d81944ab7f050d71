"""The deleveraging queue: most profitable and most leveraged first, ties by id."""

from __future__ import annotations

from perpnet.core.accounts import Account, Position
from perpnet.core.deleverage import ranking
from perpnet.core.markets import USD, MarketSet

MARKETS = MarketSet()
PRICES = {0: 50_000 * USD}
INDICES = {0: 0, 1: 0, 2: 0}
ONE_BTC = 10**10


def short(account_id: int, entry_usd: int, collateral_usd: int) -> Account:
    """A 1 BTC short opened at `entry_usd`, with the sale's proceeds in its collateral."""
    position = Position(-ONE_BTC, 0, -entry_usd * USD)
    return Account(account_id, bytes([account_id]) * 20, 0, collateral_usd * USD, 0, {0: position})


def test_profit_times_leverage_orders_the_queue() -> None:
    # value = collateral - 50,000: a: 10,000 value, pnl +20 % (entry 60k) -> 0.2 x 5 = 1.0
    # b: 5,000 value, pnl +20 % -> 0.2 x 10 = 2.0 (more leveraged, first)
    # c: 10,000 value, pnl -16.7 % (entry 42k... loss) -> last
    a = short(2, 60_000, 60_000)
    b = short(3, 60_000, 55_000)
    c = short(4, 42_000, 60_000)
    assert ranking([a, b, c], 0, False, MARKETS, PRICES, INDICES) == [3, 2, 4]


def test_ties_go_to_the_lower_id_and_sides_are_separate() -> None:
    a = short(5, 60_000, 60_000)
    b = short(2, 60_000, 60_000)
    long_one = Account(7, b"\x07" * 20, 0, 0, 0, {0: Position(ONE_BTC, 0, 50_000 * USD)})
    protocol = Account(0, b"\x00" * 20, 0, 60_000 * USD, 0, {0: Position(-ONE_BTC, 0, 0)})
    assert ranking([a, b, long_one, protocol], 0, False, MARKETS, PRICES, INDICES) == [2, 5]
    assert ranking([a, b, long_one, protocol], 0, True, MARKETS, PRICES, INDICES) == [7]
