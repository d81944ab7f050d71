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
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from perpnet.runtime import topics
from perpnet.runtime.db import Database
from perpnet.runtime.redis import Fields
from perpnet.sequencer import metrics, store

PAGE = 1_000
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
        # committed entries not yet published, in order: (seq, tx, batch_id) and batch ids
        self._txs: deque[tuple[int, bytes, int]] = deque()
        self._batches: deque[int] = deque()
        # whether every committed entry past next_seq / next_batch is in memory: once a
        # database read finds the end, every later commit is offered
        self._txs_complete = False
        self._batches_complete = False
        self._resync_at = time.monotonic() + RESYNC_S
        self._generation = 0
        self._poke = asyncio.Event()  # set by resync: publish without waiting for a commit

    def offer(self, txs: Sequence[tuple[int, bytes, int]], batch_ids: Sequence[int]) -> None:
        """One commit's log entries (seq, tx, batch_id) and cut batches, in order."""
        self._txs.extend(txs)
        self._batches.extend(batch_ids)
        if len(self._txs) > MAX_OFFERED or len(self._batches) > MAX_OFFERED:
            self.resync()

    def resync(self) -> None:
        """Read the database from next_seq / next_batch again, dropping what memory holds:
        after a write whose outcome is unknown (it may have committed without an offer),
        a failed pipeline, and every RESYNC_S seconds in any case."""
        self._txs.clear()
        self._batches.clear()
        self._txs_complete = self._batches_complete = False
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

    async def _next_txs(self, next_seq: int) -> list[tuple[int, bytes, int]]:
        """The entries from next_seq on: from memory when it holds them, else the database."""
        offered = self._txs
        while offered and offered[0][0] < next_seq:  # published from a database read
            offered.popleft()
        if offered and offered[0][0] == next_seq:
            return [offered.popleft() for _ in range(min(PAGE, len(offered)))]
        if self._txs_complete and not offered:
            return []
        generation = self._generation
        rows = await self.db.run(partial(store.read_txs, from_seq=next_seq, limit=PAGE))
        self._txs_complete = len(rows) < PAGE and generation == self._generation
        return [(row.seq, row.tx, row.batch_id) for row in rows]

    async def _next_batches(self) -> list[int]:
        offered = self._batches
        while offered and offered[0] < self.next_batch:
            offered.popleft()
        if offered and offered[0] == self.next_batch:
            return [offered.popleft() for _ in range(min(PAGE, len(offered)))]
        if self._batches_complete and not offered:
            return []
        generation = self._generation
        ids = await self.db.run(partial(store.batch_ids, from_id=self.next_batch, limit=PAGE))
        self._batches_complete = len(ids) < PAGE and generation == self._generation
        return ids

    async def _publish_txs(self) -> bool:
        assert self.next_seq is not None
        rows = await self._next_txs(self.next_seq)
        if not rows:
            return False
        pipe = self.client.pipeline(transaction=False)
        for seq, tx, batch_id in rows:
            fields: Fields = {"seq": seq, "tx": tx, "batch_id": batch_id}
            pipe.xadd(topics.TXLOG, dict(fields), maxlen=topics.TXLOG_MAXLEN, approximate=True)
        await pipe.execute()
        self.next_seq = rows[-1][0] + 1
        metrics.PUBLISHED_SEQ.set(rows[-1][0])
        return True

    async def _publish_batches(self) -> bool:
        ids = await self._next_batches()
        if not ids:
            return False
        pipe = self.client.pipeline(transaction=False)
        for batch_id in ids:
            pipe.xadd(topics.BATCHES, {"batch_id": batch_id})
        await pipe.execute()
        self.next_batch = ids[-1] + 1
        return True
