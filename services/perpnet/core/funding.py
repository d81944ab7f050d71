"""Funding rates from the order book: premium samples, averaged and clamped.

A premium sample compares the book's impact prices (the average price to
fill the market's impact notional) with the oracle index: positive when
even the impact bid is above the index (longs pay), negative when the
impact ask is below it. The rate of an interval is the mean of its samples
(dYdX samples every 60 s and applies hourly), clamped to the market's
maximum, in ppb of the oracle price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from perpnet.core.errors import ErrorCode, require
from perpnet.core.markets import PPB, Market


def premium_ppb(impact_bid: int | None, impact_ask: int | None, index_price: int) -> int:
    """One premium sample; a side too thin to fill the impact notional counts as the index."""
    require(index_price > 0, ErrorCode.NO_PRICE, "index price must be positive")
    above = 0 if impact_bid is None else max(0, impact_bid - index_price)
    below = 0 if impact_ask is None else max(0, index_price - impact_ask)
    magnitude = abs(above - below) * PPB // index_price
    return magnitude if above >= below else -magnitude


def clamp_rate(market: Market, rate_ppb: int) -> int:
    limit = market.max_funding_rate_ppb
    return max(-limit, min(limit, rate_ppb))


def interval_rate(market: Market, samples: Sequence[int]) -> int:
    """The clamped mean of an interval's samples, rounded toward zero; 0 with no samples."""
    if not samples:
        return 0
    total = sum(samples)
    mean = abs(total) // len(samples)
    return clamp_rate(market, mean if total >= 0 else -mean)


@dataclass(slots=True)
class PremiumSampler:
    """Collects one market's premium samples until the next funding tick."""

    market: Market
    samples: list[int] = field(default_factory=list)

    def sample(self, impact_bid: int | None, impact_ask: int | None, index_price: int) -> int:
        premium = premium_ppb(impact_bid, impact_ask, index_price)
        self.samples.append(premium)
        return premium

    def close_interval(self) -> int:
        """The rate to put in the FundingTick; starts a new interval."""
        rate = interval_rate(self.market, self.samples)
        self.samples.clear()
        return rate
