"""The oracle's aggregation rule: staleness, outlier rejection, quorum, lower median. Pure.

1. Stale: an observation older than `max_age_ms`, or older than `not_before_ms`
   (the oldest observation of the price in force: the core refuses to go back), is dropped.
2. Outliers: against the lower median of the fresh ones, an observation that
   deviates by more than `max_deviation_ppm` is dropped.
3. Quorum: at least `quorum` observations must remain, else no price.
4. The price is the lower median of what remains, `sorted[(n - 1) // 2]`:
   exactly the rule the core checks for an OraclePriceTick, so the tick built
   from the included observations is accepted as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from perpnet.oracle.sources import PPM, Observation


class Rejection(StrEnum):
    STALE = "stale"
    OUTLIER = "outlier"
    MISSING = "missing"  # the source has no price at all


@dataclass(frozen=True, slots=True)
class Policy:
    max_age_ms: int = 5_000
    max_deviation_ppm: int = 20_000
    quorum: int = 2

    def __post_init__(self) -> None:
        if self.max_age_ms <= 0 or self.max_deviation_ppm < 0 or self.quorum < 1:
            raise ValueError("max age > 0, deviation >= 0, quorum >= 1")


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The outcome for one market at one time; `price` is None when the quorum failed."""

    price: int | None
    included: tuple[Observation, ...]
    rejected: tuple[tuple[str, Rejection], ...]

    @property
    def oldest_ms(self) -> int | None:
        return min((o.timestamp_ms for o in self.included), default=None)


def lower_median(prices: Sequence[int]) -> int:
    ordered = sorted(prices)
    return ordered[(len(ordered) - 1) // 2]


def aggregate(
    observations: Sequence[Observation | tuple[str, None]],
    now_ms: int,
    policy: Policy,
    not_before_ms: int = 0,
) -> Aggregate:
    """Apply the rule to one market's observations (`(source, None)`: that source has none)."""
    rejected: list[tuple[str, Rejection]] = []
    fresh: list[Observation] = []
    for obs in observations:
        if not isinstance(obs, Observation):
            rejected.append((obs[0], Rejection.MISSING))
        elif now_ms - obs.timestamp_ms > policy.max_age_ms or obs.timestamp_ms < not_before_ms:
            rejected.append((obs.source, Rejection.STALE))
        else:
            fresh.append(obs)
    included: list[Observation] = []
    if fresh:
        center = lower_median([o.price for o in fresh])
        for obs in fresh:
            if abs(obs.price - center) * PPM > policy.max_deviation_ppm * center:
                rejected.append((obs.source, Rejection.OUTLIER))
            else:
                included.append(obs)
    price = lower_median([o.price for o in included]) if len(included) >= policy.quorum else None
    return Aggregate(price, tuple(included), tuple(rejected))
