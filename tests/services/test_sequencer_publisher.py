"""The publisher feeds TXLOG and BATCHES with every committed entry, in order: what was
committed before it started from the database, each later commit from memory (no
database read per commit), and after a failed pipeline everything again from the
database, with nothing missing. Real SQLite and Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from perpnet.runtime import topics
from perpnet.runtime.db import Database
from perpnet.runtime.models import BatchRecord, BatchStatus
from perpnet.runtime.redis import connect
from perpnet.sequencer import publisher as publisher_module
from perpnet.sequencer import store
from perpnet.sequencer.publisher import Publisher

T = TypeVar("T")


class _Counting(Database):
    """The database, counting the reads the publisher makes."""

    reads = 0

    async def run(self, work: Callable[[Any], T]) -> T:
        name = getattr(getattr(work, "func", None), "__name__", "")
        if name in ("read_txs", "batch_ids"):
            self.reads += 1
        return await super().run(work)


class _Log:
    """Commits entries the way the sequencer does: write, then offer, then wake."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seq = 0
        self.batch = 0
        self.event = asyncio.Event()
        self.publisher: Publisher | None = None

    async def commit(self, txs: int, cut: bool = False) -> None:
        rows = [
            {"seq": s, "tx_hash": s.to_bytes(32, "big"), "tx": b"tx%d" % s, "batch_id": self.batch,
             "received_ms": 0, "applied_ms": 0}
            for s in range(self.seq + 1, self.seq + txs + 1)
        ]  # fmt: skip
        batches = []
        if cut:
            record = BatchRecord(
                id=self.batch, old_root=bytes(32), new_root=bytes(32), first_seq=1,
                last_seq=self.seq + txs, public_inputs=b"", state_diff=b"",
            )  # fmt: skip
            record.advance(BatchStatus.SEQUENCED, 0)
            batches.append(record)
        await self.db.run(partial(store.write, rows=rows, batches=batches))
        self.seq += txs
        if self.publisher is not None:
            entries = [store.LogRow(r["seq"], r["tx"], r["tx_hash"], r["batch_id"], 0)
                       for r in rows]  # fmt: skip
            self.publisher.offer(entries, [b.id for b in batches])
        self.batch += cut
        event, self.event = self.event, asyncio.Event()
        event.set()


async def _streams(client: Any) -> tuple[list[int], list[int]]:
    txs = [int(f[b"seq"]) for _, f in await client.xrange(topics.TXLOG)]
    batches = [int(f[b"batch_id"]) for _, f in await client.xrange(topics.BATCHES)]
    return txs, batches


async def _until(
    client: Any, seqs: int, batches: int, seconds: float = 5.0
) -> tuple[list[int], list[int]]:
    for _ in range(int(seconds * 100)):
        got = await _streams(client)
        if len(got[0]) >= seqs and len(got[1]) >= batches:
            return got
        await asyncio.sleep(0.01)
    raise AssertionError(f"streams stuck at {await _streams(client)}")


@asynccontextmanager
async def _publishing(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[_Counting, _Log, Any]]:
    """A database, the log that commits to it and a running publisher fed by it."""
    db = _Counting(f"sqlite:///{tmp_path / 'seq.db'}")
    await db.upgrade()
    log = _Log(db)
    client = connect(redis_url)
    stopping = asyncio.Event()
    log.publisher = Publisher(db, client, lambda: log.event, stopping, logging.getLogger("t"))
    task = asyncio.ensure_future(log.publisher.run())
    try:
        yield db, log, client
    finally:
        stopping.set()
        await task
        await client.aclose()
        db.close()


def test_commits_are_published_in_order_from_memory(tmp_path: Path, redis_url: str) -> None:
    asyncio.run(_from_memory(tmp_path, redis_url))


async def _from_memory(tmp_path: Path, redis_url: str) -> None:
    early = _Log(_Counting(f"sqlite:///{tmp_path / 'seq.db'}"))
    await early.db.upgrade()
    for i in range(5):  # committed before the publisher runs: read from the database
        await early.commit(3, cut=i % 2 == 1)
    early.db.close()
    async with _publishing(tmp_path, redis_url) as (db, log, client):
        log.seq, log.batch = early.seq, early.batch
        assert await _until(client, 15, 2) == (list(range(1, 16)), [0, 1])
        reads = db.reads
        for i in range(40):
            await log.commit(2, cut=i % 10 == 9)
            if i % 3 == 0:
                await asyncio.sleep(0)  # the publisher sometimes runs between commits
        txs, batches = await _until(client, 95, 6)
        assert txs == list(range(1, 96)) and batches == list(range(6))
        assert db.reads == reads  # 40 commits, no database read


def test_a_failed_pipeline_loses_nothing(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_failed_pipeline(tmp_path, redis_url, monkeypatch))


async def _failed_pipeline(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with _publishing(tmp_path, redis_url) as (db, log, client):
        await log.commit(4, cut=True)
        await _until(client, 4, 1)
        real = client.pipeline
        failures = [1]

        def flaky(*args: Any, **kwargs: Any) -> Any:
            pipe = real(*args, **kwargs)
            if failures:
                failures.pop()

                async def fail() -> None:
                    raise RedisConnectionError("injected")

                pipe.execute = fail
            return pipe

        monkeypatch.setattr(client, "pipeline", flaky)
        reads = db.reads
        await log.commit(3)
        await log.commit(2, cut=True)  # taken from memory, then the pipeline fails: the last
        txs, batches = await _until(client, 9, 2, seconds=3.0)  # well before a resync
        assert not failures and db.reads > reads  # it failed once, then read the database
        assert txs == list(range(1, 10)) and batches == [0, 1]


def test_a_commit_never_offered_is_published(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write whose outcome the sequencer does not know may have committed without an
    offer: resync() publishes it at once, and the periodic database check publishes it
    even while other wake-ups keep coming."""
    asyncio.run(_never_offered(tmp_path, redis_url, monkeypatch))


async def _never_offered(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with _publishing(tmp_path, redis_url) as (_, log, client):
        await log.commit(2)
        await _until(client, 2, 0)
        publisher, log.publisher = log.publisher, None
        assert publisher is not None
        publisher.resync()
        await asyncio.sleep(0.1)  # it has read the database to its end: caught up
        await log.commit(3, cut=True)  # committed, not offered
        await asyncio.sleep(0.2)
        assert await _streams(client) == ([1, 2], [])  # memory says there is nothing new
        publisher.resync()
        assert await _until(client, 5, 1, seconds=3.0) == ([1, 2, 3, 4, 5], [0])

        monkeypatch.setattr(publisher_module, "RESYNC_S", 0.3)
        publisher.resync()  # the next periodic check in 0.3 s
        await asyncio.sleep(0.1)  # it has read the database: caught up
        await log.commit(2)  # committed, not offered; then wake-ups with nothing new
        for _ in range(100):
            if len((await _streams(client))[0]) == 7:
                break
            log.event.set()
            log.event = asyncio.Event()
            await asyncio.sleep(0.02)
        assert (await _streams(client))[0] == list(range(1, 8))
