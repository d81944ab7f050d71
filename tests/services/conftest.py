"""Fixtures for service tests: the runtime's private redis-server, a Redis database per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import redis

from perpnet.runtime.localproc import RedisServer
from runtime.conftest import redis_server  # noqa: F401 - a fixture, shared

_DATABASES = itertools.count(1)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:  # noqa: F811 - the fixture above
    """A fresh Redis database of the session's server, so streams do not leak between tests."""
    url = f"redis://127.0.0.1:{redis_server.port}/{next(_DATABASES) % 16}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url
