"""Which opposite positions absorb a bankrupt account first: profit × leverage.

Like BitMEX's auto-deleveraging queue: the most profitable, most leveraged
positions are closed first, since they can best afford it. Ranking is exact
(rational arithmetic) and ties go to the lower account id, so every replica
picks the same counterparties.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction

from perpnet.core import margin
from perpnet.core.accounts import Account
from perpnet.core.markets import MarketSet


def score(
    account: Account,
    market_id: int,
    markets: MarketSet,
    prices: Mapping[int, int],
    indices: Mapping[int, int],
) -> Fraction:
    """Profit ratio × leverage when in profit; profit ratio / leverage otherwise."""
    position = account.positions[market_id]
    market = markets.get(market_id)
    mark = market.value(position.size, prices[market_id])
    pnl = Fraction(mark - position.cost, max(1, abs(position.cost)))
    value = margin.risk(account, markets, prices, indices).value
    if value <= 0:
        return Fraction(-(10**30))
    notional = sum(
        abs(markets.get(m).value(p.size, prices[m])) for m, p in account.positions.items()
    )
    leverage = Fraction(notional, value)
    return pnl * leverage if pnl >= 0 else pnl / max(leverage, Fraction(1, 10**9))


def ranking(
    accounts: Iterable[Account],
    market_id: int,
    long: bool,
    markets: MarketSet,
    prices: Mapping[int, int],
    indices: Mapping[int, int],
) -> list[int]:
    """Ids of user accounts holding `long` (or short) positions in the market, best first."""
    candidates = [
        a
        for a in accounts
        if not a.is_system
        and market_id in a.positions
        and (a.positions[market_id].size > 0) == long
    ]
    candidates.sort(key=lambda a: (-score(a, market_id, markets, prices, indices), a.account_id))
    return [a.account_id for a in candidates]
