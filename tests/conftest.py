"""Suite-wide: every thread's stack is written to .ci/hangs/ when a test hangs.

pytest-timeout (pyproject.toml) stops a hung test's worker after `timeout` seconds;
shortly before that, faulthandler writes where each thread of that worker stands, so
the CI log (.ci/run prints the files) says what hung even when the rerun passed.
"""

from __future__ import annotations

import faulthandler
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

HANGS = Path(__file__).resolve().parent.parent / ".ci" / "hangs"


def _limit_s(config: pytest.Config) -> float:
    try:
        return float(config.getini("timeout") or 0)
    except ValueError:  # pytest-timeout not loaded (-p no:timeout): nothing stops a hang
        return 0.0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[object]:
    """Armed over the whole protocol (fixture set-up included), as pytest-timeout's timer is."""
    limit = _limit_s(item.config)
    if limit <= 0:
        return (yield)
    after = max(limit * 0.9, limit - 60)
    HANGS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", item.nodeid)[-150:]
    path = HANGS / f"{name}.{os.getpid()}.txt"  # a rerun is another worker
    with path.open("w") as out:
        out.write(f"{item.nodeid}: still running after {after:g} s\n")
        out.flush()
        faulthandler.dump_traceback_later(after, file=out)
        try:
            return (yield)
        finally:
            faulthandler.cancel_dump_traceback_later()
            path.unlink()
