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


@pytest.fixture(autouse=True)
def _stacks_if_hung(request: pytest.FixtureRequest) -> Iterator[None]:
    limit = float(request.config.getini("timeout") or 0)
    if limit <= 0:
        yield
        return
    after = max(limit * 0.9, limit - 60)
    HANGS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)[-150:]
    path = HANGS / f"{name}.{os.getpid()}.txt"  # a rerun is another worker
    with path.open("w") as out:
        out.write(f"{request.node.nodeid}: still running after {after:g} s\n")
        out.flush()
        faulthandler.dump_traceback_later(after, file=out)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
    path.unlink()
