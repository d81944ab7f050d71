"""The risk view of one account: value, requirements, free collateral.

All of it is integer arithmetic rounded against the account: mark values are
floored, requirements rounded up, so no rounding ever makes an account look
safer than it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from perpnet.core.accounts import Account
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import MarketSet
from perpnet.core.orders import Order


@dataclass(frozen=True, slots=True)
class Risk:
    value: int
    initial: int
    maintenance: int

    @property
    def free_collateral(self) -> int:
        return self.value - self.initial

    @property
    def liquidatable(self) -> bool:
        return self.value < self.maintenance


def price_of(prices: Mapping[int, int], market_id: int) -> int:
    price = prices.get(market_id)
    if price is None:
        raise CoreError(ErrorCode.NO_PRICE, f"no oracle price for market {market_id}")
    return price


def pending_funding(account: Account, indices: Mapping[int, int], markets: MarketSet) -> int:
    """Funding owed by the account (positive: it pays) since each position's last settlement."""
    owed = 0
    for market_id, position in account.positions.items():
        lots = position.size // markets.get(market_id).step_size
        owed += lots * (indices[market_id] - position.funding_index)
    return owed


def settle_funding(account: Account, indices: Mapping[int, int], markets: MarketSet) -> None:
    """Move pending funding into collateral (on a clone, inside a transaction)."""
    for market_id, position in account.positions.items():
        index = indices[market_id]
        if position.funding_index != index:
            lots = position.size // markets.get(market_id).step_size
            account.collateral -= lots * (index - position.funding_index)
            position.funding_index = index


def risk(
    account: Account,
    markets: MarketSet,
    prices: Mapping[int, int],
    indices: Mapping[int, int],
) -> Risk:
    value = account.collateral - pending_funding(account, indices, markets)
    initial = maintenance = 0
    for market_id, position in account.positions.items():
        market = markets.get(market_id)
        price = price_of(prices, market_id)
        value += market.value(position.size, price)
        initial += market.requirement(position.size, price, True)
        maintenance += market.requirement(position.size, price, False)
    return Risk(value, initial, maintenance)


def worst_case_initial(
    account: Account,
    open_orders: Iterable[Order],
    markets: MarketSet,
    prices: Mapping[int, int],
    indices: Mapping[int, int],
) -> Risk:
    """Risk if every open order filled at its limit on the worse side of each market.

    For each market the buys and the sells are filled separately and the side
    with the larger requirement (after paying the limit price against the
    oracle mark) counts, as a pre-trade check must assume.
    """
    base = risk(account, markets, prices, indices)
    buys: dict[int, tuple[int, int]] = {}
    sells: dict[int, tuple[int, int]] = {}
    for order in open_orders:
        if order.reduce_only:
            continue
        book = buys if order.is_buy else sells
        size, quote = book.get(order.market_id, (0, 0))
        market = markets.get(order.market_id)
        book[order.market_id] = (size + order.size, quote + market.quote(order.size, order.price))
    value, initial = base.value, base.initial
    for market_id in sorted(set(buys) | set(sells)):
        market = markets.get(market_id)
        price = price_of(prices, market_id)
        held = account.size(market_id)
        before = market.requirement(held, price, True)
        worst_loss = worst_extra = 0
        for sign, (size, quote) in (
            (1, buys.get(market_id, (0, 0))),
            (-1, sells.get(market_id, (0, 0))),
        ):
            if size == 0:
                continue
            loss = sign * quote - market.value(sign * size, price)  # paid above the mark
            extra = market.requirement(held + sign * size, price, True) - before
            if loss + extra > worst_loss + worst_extra:
                worst_loss, worst_extra = loss, extra
        value -= worst_loss
        initial += worst_extra
    return Risk(value, initial, base.maintenance)
