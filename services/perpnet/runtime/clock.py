"""The wall clock every service stamps with, in the milliseconds the transactions carry."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def not_before(clock_ms: int) -> int:
    """Now, or `clock_ms` if that is later: a stamp that a clock already seen (the
    sequencer's, or a refused stamp's) does not run ahead of."""
    return max(now_ms(), clock_ms)
