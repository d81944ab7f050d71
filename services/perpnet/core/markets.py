"""Perpetual market configuration: quantums, ticks, steps, margin tiers, fees.

Units (all integers):
- collateral: USD stablecoin quantums, 10**6 per dollar;
- size: base-asset quantums, 10**-atomic_resolution of one base unit;
- price: collateral quantums per one whole base unit.

So a fill's quote is size * price / 10**atomic_resolution, and each market is
validated so that every on-step size at every on-tick price gives a whole
number of quantums: trades move money exactly, with no rounding anywhere.
Funding indices count collateral quantums per step-sized lot, so funding is
exactly zero-sum too.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpnet.core.errors import CoreError, ErrorCode, require

COLLATERAL_DECIMALS = 6
USD = 10**COLLATERAL_DECIMALS
PPM = 1_000_000
PPB = 1_000_000_000


@dataclass(frozen=True, slots=True)
class MarginTier:
    """Fractions (ppm) for the part of a position's size (base quantums) below `up_to`.

    Tiers by size, not notional (dYdX v3's incremental position size): the batch AIR
    proves each tier's part with small-integer arithmetic."""

    up_to: int | None
    initial_ppm: int
    maintenance_ppm: int


@dataclass(frozen=True, slots=True)
class Market:
    market_id: int
    symbol: str
    atomic_resolution: int
    step_size: int
    tick_size: int
    min_order_size: int
    tiers: tuple[MarginTier, ...]
    maker_fee_ppm: int = 200
    taker_fee_ppm: int = 500
    liquidation_fee_ppm: int = 10_000
    max_liquidation_spread_ppm: int = 45_000
    max_funding_rate_ppb: int = 10_000_000  # |rate| per funding interval: 1 %
    impact_notional: int = 10_000 * USD
    size_scale: int = 0  # 10**atomic_resolution, filled in by __post_init__

    def __post_init__(self) -> None:
        require(0 <= self.market_id < 2**16, ErrorCode.INVALID_FIELD, "market id is a u16")
        require(self.step_size > 0 and self.tick_size > 0, ErrorCode.INVALID_FIELD, "steps > 0")
        require(
            self.min_order_size >= self.step_size and self.min_order_size % self.step_size == 0,
            ErrorCode.INVALID_FIELD,
            "minimum order size must be a positive multiple of the step",
        )
        scale = 10**self.atomic_resolution
        require(
            (self.step_size * self.tick_size) % scale == 0,
            ErrorCode.INVALID_FIELD,
            f"{self.symbol}: step*tick must be a whole number of collateral quantums",
        )
        require(len(self.tiers) > 0, ErrorCode.INVALID_FIELD, "at least one margin tier")
        previous = 0
        for i, tier in enumerate(self.tiers):
            last = i == len(self.tiers) - 1
            require(
                (tier.up_to is None) == last, ErrorCode.INVALID_FIELD, "only the last tier is open"
            )
            require(
                0 < tier.maintenance_ppm < tier.initial_ppm <= PPM,
                ErrorCode.INVALID_FIELD,
                "0 < maintenance < initial <= 100 %",
            )
            if tier.up_to is not None:
                require(tier.up_to > previous, ErrorCode.INVALID_FIELD, "tiers ascend")
                require(
                    tier.up_to % self.step_size == 0,
                    ErrorCode.INVALID_FIELD,
                    "tier bounds are whole steps",
                )
                previous = tier.up_to
        for a, b in zip(self.tiers, self.tiers[1:], strict=False):
            require(
                b.initial_ppm >= a.initial_ppm and b.maintenance_ppm >= a.maintenance_ppm,
                ErrorCode.INVALID_FIELD,
                "margin fractions grow with size",
            )
        object.__setattr__(self, "size_scale", scale)

    def quote(self, size: int, price: int) -> int:
        """Collateral quantums for `size` at an on-tick `price` (exact)."""
        return size * price // self.size_scale

    def value(self, size: int, price: int) -> int:
        """Signed mark value of a position, floored: never overstates an account."""
        return size * price // self.size_scale

    def requirement(self, size: int, price: int, initial: bool) -> int:
        """Margin for a position of |size| at `price`: each tier adds its fraction's
        increase over the previous tier on the part of the size beyond the tier's start,
        rounded up part by part (monotone and continuous in size; exactly what the batch
        AIR proves, one row per part)."""
        held = abs(size)
        total = start = previous = 0
        for tier in self.tiers:
            if held <= start:
                break
            ppm = tier.initial_ppm if initial else tier.maintenance_ppm
            total += -(-self.quote(held - start, price) * (ppm - previous) // PPM)
            if tier.up_to is None:
                break
            start, previous = tier.up_to, ppm
        return total

    def funding_delta(self, rate_ppb: int, price: int) -> int:
        """Index change per step-sized lot for a funding rate at a price, rounded toward zero."""
        numerator, denominator = rate_ppb * price * self.step_size, self.size_scale * PPB
        magnitude = abs(numerator) // denominator
        return magnitude if numerator >= 0 else -magnitude

    def lots(self, size: int) -> int:
        return size // self.step_size

    def check_order_size(self, size: int) -> None:
        # hot path (every order): build a message only when refusing
        if size <= 0:
            raise CoreError(ErrorCode.INVALID_FIELD, "size must be positive")
        if size % self.step_size:
            raise CoreError(ErrorCode.OFF_STEP, f"size not a multiple of {self.step_size}")
        if size < self.min_order_size:
            raise CoreError(ErrorCode.BELOW_MIN_SIZE, f"size below {self.min_order_size}")

    def check_price(self, price: int) -> None:
        if price <= 0:
            raise CoreError(ErrorCode.INVALID_FIELD, "price must be positive")
        if price % self.tick_size:
            raise CoreError(ErrorCode.OFF_TICK, f"price not a multiple of {self.tick_size}")


def _tiers(imf: int, mmf: int, first: int, second: int) -> tuple[MarginTier, ...]:
    """Three liquidity tiers by size: base fractions, then 1.5x beyond `first` and 2.5x
    beyond `second` base quantums (each on the part of the position past its start)."""
    return (
        MarginTier(first, imf, mmf),
        MarginTier(second, imf * 3 // 2, mmf * 3 // 2),
        MarginTier(None, imf * 5 // 2, mmf * 5 // 2),
    )


DEFAULT_MARKETS: tuple[Market, ...] = (
    # tiers at 15 and 75 BTC, 250 and 1,000 ETH, 2,500 and 10,000 SOL
    Market(0, "BTC-USD", 10, 10**6, USD, 10**6, _tiers(50_000, 30_000, 15 * 10**10, 75 * 10**10)),
    Market(1, "ETH-USD", 9, 10**6, USD // 10, 10**6, _tiers(50_000, 30_000, 250 * 10**9, 10**12)),
    Market(2, "SOL-USD", 7, 10**5, USD // 1000, 10**5, _tiers(100_000, 50_000, 25 * 10**9, 10**11)),
)


class MarketSet:
    """The markets in force, looked up by id."""

    __slots__ = ("by_id", "markets")

    def __init__(self, markets: tuple[Market, ...] = DEFAULT_MARKETS) -> None:
        ids = [m.market_id for m in markets]
        if len(set(ids)) != len(ids):
            raise CoreError(ErrorCode.INVALID_FIELD, "market ids must be unique")
        self.markets = tuple(sorted(markets, key=lambda m: m.market_id))
        self.by_id = {m.market_id: m for m in self.markets}

    def get(self, market_id: int) -> Market:
        market = self.by_id.get(market_id)
        if market is None:
            raise CoreError(ErrorCode.UNKNOWN_MARKET, f"no market {market_id}")
        return market
