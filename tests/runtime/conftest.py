"""A private redis-server per test session (per xdist worker), never the system one.

redis-server must be installed (scripts/test.sh does it); if it is not, the
tests that need it fail with the install command rather than skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from perpnet.runtime.localproc import RedisServer, start_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(Path(tmp_path_factory.mktemp("redis")))
    try:
        yield server
    finally:
        server.stop()
