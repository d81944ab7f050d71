"""Feeds the Redis streams TXLOG and BATCHES from the database, after each commit.

The database is the source of truth and Redis only a fast feed, so the
publisher never holds up an acknowledgement: it reads what was committed
and XADDs it. It resumes from each stream's last entry (its seq or batch_id),
so after a restart, a Redis outage or a failed pipeline nothing committed is
missing from the streams; an entry may appear twice after a failure between
XADD and its reply, so consumers key on seq and batch_id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from perpnet.runtime import topics
from perpnet.runtime.db import Database
from perpnet.runtime.redis import Fields
from perpnet.sequencer import metrics, store

PAGE = 1_000


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

    async def run(self) -> None:
        delay = 0.1
        failing = False
        while not self.stopping.is_set():
            changed = self.changed()
            try:
                if self.next_seq is None:
                    self.next_seq = await self._tail(topics.TXLOG, b"seq") + 1
                    self.next_batch = await self._tail(topics.BATCHES, b"batch_id") + 1
                moved = await self._publish_txs()
                moved = await self._publish_batches() or moved
            except (RedisError, OSError) as exc:
                metrics.PUBLISH_ERRORS.inc()
                if not failing:
                    self.log.warning("cannot publish to Redis; retrying", extra={"error": str(exc)})
                failing = True
                self.next_seq = None  # re-read the tails: a failed pipeline may have half-applied
                await wait_any(self.stopping, timeout=delay)
                delay = min(delay * 2, 5.0)
                continue
            if failing:
                self.log.info("publishing to Redis again", extra={"next_seq": self.next_seq})
            failing, delay = False, 0.1
            if not moved:
                await wait_any(changed, self.stopping)

    async def _tail(self, stream: str, field: bytes) -> int:
        """The number in `field` of the stream's last entry (0 for txs, -1 for batches: none)."""
        last: Any = await self.client.xrevrange(stream, count=1)
        if last:
            return int(last[0][1][field])
        return 0 if field == b"seq" else -1

    async def _publish_txs(self) -> bool:
        assert self.next_seq is not None
        rows = await self.db.run(partial(store.read_txs, from_seq=self.next_seq, limit=PAGE))
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
        ids = await self.db.run(partial(store.batch_ids, from_id=self.next_batch, limit=PAGE))
        if not ids:
            return False
        pipe = self.client.pipeline(transaction=False)
        for batch_id in ids:
            pipe.xadd(topics.BATCHES, {"batch_id": batch_id})
        await pipe.execute()
        self.next_batch = ids[-1] + 1
        return True
