"""Feeds the Redis streams TXLOG and BATCHES with what was committed, after each commit.

The database is the source of truth and Redis only a fast feed, so the
publisher never holds up an acknowledgement. The sequencer hands it each
commit's log entries and batch ids (`offer`), and it XADDs them from memory;
it reads the database only to fill a gap: at start, until it has caught up
with what was committed before, after a Redis failure or a write whose outcome
is unknown, and once every RESYNC_S seconds as a safety net. It resumes from
each stream's last entry (its seq or batch_id), so after a restart, a Redis
outage or a failed pipeline nothing committed is missing from the streams; an
entry may appear twice after a failure between XADD and its reply, so
consumers key on seq and batch_id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from perpnet.runtime import topics
from perpnet.runtime.db import Database
from perpnet.runtime.redis import Fields
from perpnet.sequencer import metrics, store

PAGE = 1_000
T = TypeVar("T")
RESYNC_S = 5.0
"""The database is read once every this many seconds whatever memory holds: a safety net,
should a commit ever not be offered."""
MAX_OFFERED = 20 * PAGE
"""Entries held for publishing; past it (Redis down for long) they are dropped and the
database read again once Redis is back."""


async def wait_any(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Return once any of `events` is set (or after `timeout`)."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


class _Offered(Generic[T]):
    """One stream's committed items not yet published, in order, each numbered by `key`."""

    def __init__(self, key: Callable[[T], int]) -> None:
        self.items: deque[T] = deque()
        self.key = key
        # every committed item past the next one to publish is in memory: true once a
        # database read finds the end, since every later commit is offered
        self.complete = False

    def forget(self) -> None:
        self.items.clear()
        self.complete = False

    def take(self, start: int) -> list[T] | None:
        """Up to a page of items from number `start` on, [] if there are none yet, or None
        if memory cannot tell (the database must)."""
        items = self.items
        while items and self.key(items[0]) < start:  # published from a database read
            items.popleft()
        if items and self.key(items[0]) == start:
            return [items.popleft() for _ in range(min(PAGE, len(items)))]
        return [] if self.complete and not items else None


class Publisher:
    def __init__(
        self,
        db: Database,
        client: aioredis.Redis,
        changed: Callable[[], asyncio.Event],
        stopping: asyncio.Event,
        log: logging.Logger,
    ) -> None:
        self.db = db
        self.client = client
        self.changed = changed  # the event the next commit sets
        self.stopping = stopping
        self.log = log
        self.next_seq: int | None = None  # unknown until read from the stream's tail
        self.next_batch = 0
        self._txs: _Offered[store.LogRow] = _Offered(lambda row: row.seq)
        self._batches: _Offered[int] = _Offered(lambda batch_id: batch_id)
        self._resync_at = time.monotonic() + RESYNC_S
        self._generation = 0
        self._poke = asyncio.Event()  # set by resync: publish without waiting for a commit

    def offer(self, txs: Sequence[store.LogRow], batch_ids: Sequence[int]) -> None:
        """One commit's log entries and cut batches, in order."""
        self._txs.items.extend(txs)
        self._batches.items.extend(batch_ids)
        if len(self._txs.items) > MAX_OFFERED or len(self._batches.items) > MAX_OFFERED:
            self.resync()

    def resync(self) -> None:
        """Read the database from next_seq / next_batch again, dropping what memory holds:
        after a write whose outcome is unknown (it may have committed without an offer),
        a failed pipeline, and every RESYNC_S seconds in any case."""
        self._txs.forget()
        self._batches.forget()
        self._resync_at = time.monotonic() + RESYNC_S
        self._generation += 1  # a read in flight now does not mark anything complete
        self._poke.set()

    async def run(self) -> None:
        delay = 0.1
        failing = False
        while not self.stopping.is_set():
            changed = self.changed()
            self._poke.clear()
            try:
                if self.next_seq is None:
                    self.next_seq = await self._tail(topics.TXLOG, b"seq") + 1
                    self.next_batch = await self._tail(topics.BATCHES, b"batch_id") + 1
                moved = await self._publish_txs()
                moved = await self._publish_batches() or moved
            except (RedisError, OSError, SQLAlchemyError) as exc:
                metrics.PUBLISH_ERRORS.inc()
                if not failing:
                    self.log.warning("cannot publish; retrying", extra={"error": str(exc)})
                failing = True
                self.next_seq = None  # re-read the tails: a failed pipeline may have half-applied
                self.resync()
                await wait_any(self.stopping, timeout=delay)
                delay = min(delay * 2, 5.0)
                continue
            if failing:
                self.log.info("publishing to Redis again", extra={"next_seq": self.next_seq})
            failing, delay = False, 0.1
            if time.monotonic() >= self._resync_at:  # the safety net: check the database
                self.resync()
            elif not moved:
                await wait_any(changed, self._poke, self.stopping, timeout=RESYNC_S)

    async def _tail(self, stream: str, field: bytes) -> int:
        """The number in `field` of the stream's last entry (0 for txs, -1 for batches: none)."""
        last: Any = await self.client.xrevrange(stream, count=1)
        if last:
            return int(last[0][1][field])
        return 0 if field == b"seq" else -1

    async def _next(
        self, offered: _Offered[T], start: int, read: Callable[[Session], list[T]]
    ) -> list[T]:
        """What follows `start`: from memory when it holds it, else read from the database."""
        found = offered.take(start)
        if found is not None:
            return found
        generation = self._generation
        items = await self.db.run(read)
        # a resync during the read may concern a commit the read did not see
        offered.complete = len(items) < PAGE and generation == self._generation
        return items

    async def _publish_txs(self) -> bool:
        start = self.next_seq
        assert start is not None
        read = partial(store.read_txs, from_seq=start, limit=PAGE)
        rows = await self._next(self._txs, start, read)
        if not rows:
            return False
        pipe = self.client.pipeline(transaction=False)
        for row in rows:
            fields: Fields = {"seq": row.seq, "tx": row.tx, "batch_id": row.batch_id}
            pipe.xadd(topics.TXLOG, dict(fields), maxlen=topics.TXLOG_MAXLEN, approximate=True)
        await pipe.execute()
        self.next_seq = rows[-1].seq + 1
        metrics.PUBLISHED_SEQ.set(rows[-1].seq)
        return True

    async def _publish_batches(self) -> bool:
        read = partial(store.batch_ids, from_id=self.next_batch, limit=PAGE)
        ids = await self._next(self._batches, self.next_batch, read)
        if not ids:
            return False
        pipe = self.client.pipeline(transaction=False)
        for batch_id in ids:
            pipe.xadd(topics.BATCHES, {"batch_id": batch_id})
        await pipe.execute()
        self.next_batch = ids[-1] + 1
        return True
