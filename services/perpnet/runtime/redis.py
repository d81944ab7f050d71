"""Redis: a client factory and work queues on Redis Streams consumer groups.

A job stays in the group's pending list from the moment a consumer reads it
until that consumer acknowledges it. If the consumer dies (a prover worker
killed mid-proof), the job is not lost: any other consumer takes it over with
XAUTOCLAIM once it has been idle longer than `min_idle_ms`. Consumers must
therefore tolerate seeing a job twice (proving a batch twice is harmless).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT, FieldT

Fields = Mapping[FieldT, EncodableT]


def connect(url: str) -> aioredis.Redis:
    """A client for `url`; replies stay bytes (jobs carry binary encodings)."""
    client: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=False)
    return client


async def ping(client: aioredis.Redis) -> bool:
    """Whether Redis answers (for a service's ready())."""
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False


@dataclass(frozen=True, slots=True)
class Job:
    id: bytes
    fields: dict[bytes, bytes]


def _jobs(entries: Any) -> list[Job]:
    # Entries deleted from the stream while pending come back with no fields.
    return [Job(entry_id, dict(fields)) for entry_id, fields in entries if fields is not None]


class StreamGroup:
    """One consumer's view of a stream consumed by a group: add, read, ack, reclaim."""

    def __init__(self, client: aioredis.Redis, stream: str, group: str, consumer: str) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer

    async def ensure(self) -> None:
        """Create the stream and the group if missing (idempotent; a new group sees everything)."""
        try:
            await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def add(self, fields: Fields, maxlen: int | None = None) -> bytes:
        entry_id = await self.client.xadd(
            self.stream, dict(fields), maxlen=maxlen, approximate=True
        )
        return entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()

    async def read(self, count: int = 1, block_ms: int | None = 1000) -> list[Job]:
        """New jobs for this consumer, waiting up to `block_ms` for one (None: do not wait)."""
        reply: Any = await self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return [job for _stream, entries in reply or () for job in _jobs(entries)]

    async def ack(self, *jobs: Job) -> int:
        if not jobs:
            return 0
        acked: int = await self.client.xack(self.stream, self.group, *(j.id for j in jobs))
        return acked

    async def reclaim(self, min_idle_ms: int, count: int = 10) -> list[Job]:
        """Take over up to `count` jobs that other consumers left idle for `min_idle_ms`."""
        claimed: list[Job] = []
        start: bytes | str = "0-0"
        while len(claimed) < count:
            reply: Any = await self.client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=min_idle_ms,
                start_id=start,
                count=count - len(claimed),
            )
            start, entries = reply[0], reply[1]
            claimed.extend(_jobs(entries))
            if start in (b"0-0", "0-0"):
                break
        return claimed

    async def pending(self) -> int:
        """Jobs read but not yet acknowledged, across all consumers."""
        summary = await self.client.xpending(self.stream, self.group)
        return int(summary["pending"])
