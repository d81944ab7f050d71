"""The batch AIR's column layout, numeric bounds and market constants.

Shared by the witness builder (which fills the columns), the AIR (which
constrains them) and the verifier (which encodes public values the same way),
so that the three can never disagree on where a value lives or how it is split.

Every integer wider than the 31-bit field is kept in 11-bit limbs, each limb
range-checked by a LogUp lookup into the table `tab` = 0..1023 and `tab` + 1024. Signed
values carry an offset that is a multiple of 2^33, so that low limbs of a signed
value are its low bits and limb-wise carry equations need no offset terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

from perpnet.core.markets import PPM, Market, MarketSet

LIMB_BITS = 11
LIMB = 1 << LIMB_BITS
TABLE_SIZE = LIMB
TABLE_ROWS = TABLE_SIZE // 2
"""The table holds two values per row, `tab` and `tab` + 1,024 (multiplicities `mult`
and `mult2`), so that it fits a 2,048-row trace."""
MIN_TRACE = 2 * TABLE_ROWS
"""The LogUp running sum does not count the last row's terms: the table's 1,024 rows
need at least 1,025, so 2,048."""

SMALL_BITS = 20
"""Position lots, trade lots, prices in ticks and funding-index gaps: |x| < 2^20."""
OFF_SMALL = 1 << SMALL_BITS
C_BITS = 49
"""Collateral: |C| < 2^49 quantums (about 563 million USD)."""
OFF_C = 1 << C_BITS
Z_BITS = 40
"""Products X·Y: |Z| < 2^40."""
OFF_Z = 1 << Z_BITS
V_BITS = 44
"""Amounts (fees, deposits, withdrawals, transfers): 0 <= V < 2^44."""
MAX_FRACTION = 1 << 9
"""Reduced fee fractions a/b need a, b <= 2^9 so limb carries stay in one lookup."""
MAX_QUOTE_UNIT = 1 << 8
"""Quantums per (lot × tick): step·tick/scale < 2^8."""
INDEX_WINDOW = 1 << 29
"""All funding indices of one market a batch can see lie in a window this wide."""
MAX_ACCOUNT_ID = 1 << 30
MAX_NONCE = 1 << 30


MAX_TIERS = 3
"""Margin tiers per market the AIR expresses: a check is one row per tier a position
reaches (the tier-1 row and one excess row per later tier)."""
TIER_OPEN = 1 << SMALL_BITS
"""The width of an open tier: past every position (|lots| < 2^20)."""
MAX_MARGIN_RATE = 1 << (V_BITS - Z_BITS)
"""Margin per (lot × tick) below 16 quantums, so V = ceil(rate·Z) < 2^44 for Z < 2^40."""


def split(value: int, limbs: int) -> list[int]:
    """Little-endian 11-bit limbs of a non-negative integer."""
    return [(value >> (LIMB_BITS * i)) & (LIMB - 1) for i in range(limbs)]


def c_limbs(collateral: int) -> list[int]:
    return split(collateral + OFF_C, 5)


def z_limbs(z: int) -> list[int]:
    return split(z + OFF_Z, 4)


def v_limbs(v: int) -> list[int]:
    return split(v, 4)


def small_limbs(x: int) -> list[int]:
    return split(x + OFF_SMALL, 2)


@dataclass(frozen=True, slots=True)
class MarketConstants:
    """What the AIR needs of one market: quantums per lot-tick and reduced fee fractions."""

    market_id: int
    step_size: int
    tick_size: int
    quote_unit: int
    maker_fee: tuple[int, int]
    taker_fee: tuple[int, int]
    initial: tuple[tuple[int, int], ...] = ((0, 1),) * 3
    """Initial margin per (lot × tick) for the tier-1 part of a position, then the
    increase for the parts past each later tier's start: reduced fractions unit·ppm/10^6."""
    maintenance: tuple[tuple[int, int], ...] = ((0, 1),) * 3
    widths: tuple[int, ...] = (TIER_OPEN,) * 3
    """Lots in each tier (the last, open tier: TIER_OPEN, beyond any position)."""

    @staticmethod
    def of(market: Market) -> MarketConstants:
        unit = market.step_size * market.tick_size // market.size_scale
        if len(market.tiers) > MAX_TIERS:
            raise ValueError(f"market {market.market_id}: more than {MAX_TIERS} margin tiers")
        initial, maintenance, widths = [], [], []
        start = previous_i = previous_m = 0
        for tier in market.tiers:
            initial.append(_fraction(unit * (tier.initial_ppm - previous_i), PPM))
            maintenance.append(_fraction(unit * (tier.maintenance_ppm - previous_m), PPM))
            previous_i, previous_m = tier.initial_ppm, tier.maintenance_ppm
            if tier.up_to is None:
                widths.append(TIER_OPEN)
                break
            end = min(tier.up_to // market.step_size, TIER_OPEN)
            widths.append(end - start)
            start = end
        pad = MAX_TIERS - len(market.tiers)
        return MarketConstants(
            market.market_id,
            market.step_size,
            market.tick_size,
            unit,
            _fraction(unit * market.maker_fee_ppm, PPM),
            _fraction(unit * market.taker_fee_ppm, PPM),
            (*initial, *((0, 1),) * pad),
            (*maintenance, *((0, 1),) * pad),
            (*widths, *(TIER_OPEN,) * pad),
        )

    def encode(self) -> bytes:
        parts = (
            self.market_id,
            self.step_size,
            self.tick_size,
            self.quote_unit,
            *self.maker_fee,
            *self.taker_fee,
            *(x for f in self.initial for x in f),
            *(x for f in self.maintenance for x in f),
            *self.widths,
        )
        return b"".join(p.to_bytes(16, "big") for p in parts)


def _fraction(num: int, den: int) -> tuple[int, int]:
    g = gcd(num, den)
    return num // g, den // g


def market_constants(markets: MarketSet) -> tuple[MarketConstants, ...]:
    """Constants of every market, or ValueError naming a market the AIR cannot express."""
    out = tuple(MarketConstants.of(m) for m in markets.markets)
    for c in out:
        if not 0 < c.quote_unit < MAX_QUOTE_UNIT:
            raise ValueError(f"market {c.market_id}: step·tick/scale must be in [1, 2^8)")
        for a, b in (c.maker_fee, c.taker_fee, *c.initial, *c.maintenance):
            if a > MAX_FRACTION or b > MAX_FRACTION:
                raise ValueError(f"market {c.market_id}: reduced fee fraction {a}/{b} too large")
        for a, b in (*c.initial, *c.maintenance):
            if a >= MAX_MARGIN_RATE * b:
                raise ValueError(
                    f"market {c.market_id}: margin {a}/{b} per lot-tick: V would pass 2^44"
                )
    return out


KINDS = (
    "k_set", "k_mk", "k_tk", "k_fee", "k_dep", "k_wd", "k_xo", "k_xi", "k_mg", "k_tick",
    "k_fw", "k_lqm", "k_lcm", "k_lqb", "k_lcb", "k_lfi",
)  # fmt: skip
"""Row kinds: funding settlement of one position, maker/taker side of a trade, the fee
pool's credit of the fees accumulated so far, deposit, withdrawal, transfer out/in, one
market of a margin check, price/funding tick, forced withdrawal, the liquidated side and
the maker of a liquidation against an order (priced), the closing side and the
counterparty of an insurance takeover or a deleverage (receipt given), the insurance
fund's credit of a liquidation fee. A row with no kind is padding. Every kind but k_mg
and k_tick is a memory operation; a k_mg row is one when it starts its chain (`mst`)."""

MAX_TRACE = 1 << 20
"""Batch traces have at most 2^20 rows: the fee accumulator's limb sums stay below p."""


class Columns:
    """Column indices by name for a given number of markets."""

    def __init__(self, num_markets: int) -> None:
        m = num_markets
        names: list[str] = ["t", "acct", "r0", "r1", *KINDS]
        names += ["sig", "sq", "D", "nz", "G", "fa", "fb", "rem"]
        names += [f"e{i}" for i in range(m)]
        names += [f"co{i}" for i in range(5)] + [f"cn{i}" for i in range(5)] + ["nonce"]
        names += [f"lo{i}" for i in range(m)] + [f"fo{i}" for i in range(m)]
        names += [f"fn{i}" for i in range(m)] + [f"I{i}" for i in range(m)]
        names += ["a0", "a1", "x0", "x1", "y0", "y1", "z0", "z1", "z2", "z3", "wp"]
        names += ["v0", "v1", "v2", "v3", "wc0", "wc1", "wf0", "wf1", "wf2"]
        names += ["dseq", "wseq", "fseq", "tab", "mult", "mult2"]
        names += ["mi", "pr", "pw", "q", "mst", "trd", "rho", "xseq"]
        names += ["t2", "t3", "hx", "lb", "s0", "s1"]
        names += [f"fq{i}" for i in range(4)] + [f"fc{i}" for i in range(3)]
        names += [f"cov{i}" for i in range(m)] + [f"T{i}" for i in range(m)]
        self.names = tuple(names)
        self.index = {n: i for i, n in enumerate(names)}
        self.num_markets = m

    @property
    def width(self) -> int:
        return len(self.names)

    def __getitem__(self, name: str) -> int:
        return self.index[name]
