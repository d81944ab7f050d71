"""The wall clock every service stamps with, in the milliseconds the transactions carry."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
