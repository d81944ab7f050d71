"""Price sources: pure, deterministic models of the exchanges an oracle would read.

A *reference* process is the market's "true" price as a function of time:
`RandomWalk` (a seeded geometric walk with calm/volatile regimes and jumps) or
`CsvReplay` (a recorded series). Each *source* observes the reference through
its own seeded noise and faults (`NoisySource`): a small idiosyncratic error,
outages (it keeps serving its last price, which ages) and wild prints. So the
sources of a market are independent but agree on the market, as real venues do.

Everything is a pure function of (seed, time): the same configuration replays
the same prices, which keeps drills and tests reproducible. Prices are
integers on the market's tick (quantums per whole base unit), never below one tick.
"""

from __future__ import annotations

import bisect
import csv
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

PPM = 1_000_000


class Reference(Protocol):
    """A market's reference price at a time (ms since the process start)."""

    def price_at(self, t_ms: int) -> int: ...


@dataclass(frozen=True, slots=True)
class Observation:
    """What one source reports: a price and when the source last updated it."""

    source: str
    price: int
    timestamp_ms: int


def on_tick(price: float, tick: int) -> int:
    """Round to the nearest multiple of `tick`, at least one tick."""
    return max(tick, round(price / tick) * tick)


@dataclass(frozen=True, slots=True)
class Regime:
    """Volatility (ppm of the price per sqrt(second)) and how long the regime lasts on average."""

    vol_ppm: int
    mean_duration_s: float


@dataclass(frozen=True, slots=True)
class WalkParams:
    start: int  # the first price, in quantums
    tick: int
    regimes: tuple[Regime, ...] = (Regime(500, 120.0), Regime(3_000, 20.0))  # calm, volatile
    jumps_per_hour: float = 2.0
    jump_ppm: int = 20_000  # jump size: standard deviation of the log jump
    step_ms: int = 250


@dataclass(slots=True)
class RandomWalk:
    """A seeded geometric random walk with Markov regime switching and Poisson jumps.

    The path is built lazily in steps of `step_ms`; `price_at(t)` is the price of
    the step that holds t, so it depends only on the seed and t.
    """

    params: WalkParams
    seed: int
    _rng: random.Random = field(init=False)
    _log_prices: list[float] = field(init=False)
    _regime: int = 0

    def __post_init__(self) -> None:
        if self.params.start <= 0 or self.params.tick <= 0 or self.params.step_ms <= 0:
            raise ValueError("start, tick and step must be positive")
        self._rng = random.Random(self.seed)
        self._log_prices = [math.log(self.params.start)]

    def _step(self) -> None:
        p, rng = self.params, self._rng
        dt = p.step_ms / 1000
        regime = p.regimes[self._regime]
        if len(p.regimes) > 1 and rng.random() < dt / regime.mean_duration_s:
            self._regime = (self._regime + 1 + rng.randrange(len(p.regimes) - 1)) % len(p.regimes)
        sigma = regime.vol_ppm / PPM * math.sqrt(dt)
        move = rng.gauss(0.0, sigma) - sigma * sigma / 2
        if rng.random() < p.jumps_per_hour * dt / 3600:
            move += rng.gauss(0.0, p.jump_ppm / PPM)
        self._log_prices.append(self._log_prices[-1] + move)

    @property
    def regime(self) -> int:
        return self._regime

    def price_at(self, t_ms: int) -> int:
        step = max(0, t_ms) // self.params.step_ms
        while len(self._log_prices) <= step:
            self._step()
        return on_tick(math.exp(self._log_prices[step]), self.params.tick)


@dataclass(frozen=True, slots=True)
class CsvReplay:
    """A recorded price series: the last row at or before t; the series loops if asked."""

    offsets_ms: tuple[int, ...]
    prices: tuple[int, ...]
    loop: bool = True

    @classmethod
    def load(cls, path: Path, market: int | str, loop: bool = True) -> CsvReplay:
        """Rows `offset_ms,market,price` (market id or symbol; a header line is allowed)."""
        rows: list[tuple[int, int]] = []
        key = str(market).upper()
        with path.open(newline="") as f:
            for line, row in enumerate(csv.reader(f), 1):
                if not row or row[0].startswith("#") or (line == 1 and not row[0].isdigit()):
                    continue
                if len(row) != 3:
                    raise ValueError(f"{path}:{line}: expected offset_ms,market,price")
                if row[1].strip().upper() == key:
                    rows.append((int(row[0]), int(row[2])))
        return cls.of(rows, loop)

    @classmethod
    def of(cls, rows: Sequence[tuple[int, int]], loop: bool = True) -> CsvReplay:
        ordered = sorted(rows)
        if not ordered:
            raise ValueError("a replay needs at least one price")
        if any(price <= 0 for _, price in ordered):
            raise ValueError("replayed prices must be positive")
        return cls(tuple(t for t, _ in ordered), tuple(p for _, p in ordered), loop)

    def price_at(self, t_ms: int) -> int:
        span = self.offsets_ms[-1] + 1
        t = t_ms % span if self.loop and t_ms >= span else t_ms
        i = bisect.bisect_right(self.offsets_ms, t) - 1
        return self.prices[max(i, 0)]


@dataclass(frozen=True, slots=True)
class SourceParams:
    noise_ppm: int = 300  # standard deviation of the source's own error
    update_ms: int = 500  # how often it publishes a new price
    outage_prob: float = 0.002  # chance that an update starts an outage
    outage_updates: int = 20  # how many updates an outage lasts
    outlier_prob: float = 0.002  # chance that an update is a wild print
    outlier_ppm: int = 100_000


@dataclass(frozen=True, slots=True)
class NoisySource:
    """One venue's view of a reference: noise, outages (stale prices) and outliers.

    Update k's fate is drawn from a generator seeded by (seed, k): an observation
    at any time is computed without history, so sources are pure functions of time.
    """

    name: str
    reference: Reference
    tick: int
    seed: int
    params: SourceParams = SourceParams()

    def _draw(self, k: int) -> random.Random:
        return random.Random(f"{self.seed}:{k}")

    def _in_outage(self, k: int) -> bool:
        p = self.params
        return any(
            self._draw(j).random() < p.outage_prob for j in range(max(0, k - p.outage_updates), k)
        )

    def observe(self, t_ms: int) -> Observation | None:
        """The source's latest price at `t_ms`: None before its first update ever."""
        p = self.params
        k = max(0, t_ms) // p.update_ms
        while self._in_outage(k):
            k -= 1
            if k < 0:
                return None
        rng = self._draw(k)
        rng.random()  # the outage draw, made in _in_outage for later updates
        error = rng.gauss(0.0, p.noise_ppm / PPM)
        if rng.random() < p.outlier_prob:
            error += rng.choice((-1, 1)) * p.outlier_ppm / PPM
        at = k * p.update_ms
        price = on_tick(self.reference.price_at(at) * (1 + error), self.tick)
        return Observation(self.name, price, at)
