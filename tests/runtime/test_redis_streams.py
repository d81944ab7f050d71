"""Redis Streams work queues: a job whose consumer died unacknowledged is reclaimed."""

from __future__ import annotations

import asyncio

from perpnet.runtime.localproc import RedisServer
from perpnet.runtime.redis import StreamGroup, connect, ping


def test_a_dead_consumers_job_is_reclaimed_by_another(redis_server: RedisServer) -> None:
    asyncio.run(_reclaim(redis_server.url))


async def _reclaim(url: str) -> None:
    producer, doomed, survivor = connect(url), connect(url), connect(url)
    try:
        assert await ping(producer)
        queue = StreamGroup(producer, "batches:reclaim", "provers", "sequencer")
        await queue.ensure()
        await queue.ensure()  # idempotent
        job_id = await queue.add({"batch_id": 7, "inputs": b"\x00\xffbinary"})

        worker_a = StreamGroup(doomed, queue.stream, queue.group, "prover-a")
        [job] = await worker_a.read(block_ms=1000)
        assert job.id == job_id and job.fields == {b"batch_id": b"7", b"inputs": b"\x00\xffbinary"}
        await doomed.aclose()  # prover-a dies mid-proof: it never acknowledges

        worker_b = StreamGroup(survivor, queue.stream, queue.group, "prover-b")
        assert await worker_b.read(block_ms=None) == []  # nothing new: the job is pending
        assert await worker_b.reclaim(min_idle_ms=60_000) == []  # not idle long enough yet
        await asyncio.sleep(0.15)
        [taken] = await worker_b.reclaim(min_idle_ms=100)
        assert taken == job
        assert await worker_b.ack(taken) == 1
        assert await queue.pending() == 0
        assert await worker_b.reclaim(min_idle_ms=0) == []
    finally:
        for client in (producer, survivor):
            await client.aclose()


def test_ping_is_false_when_redis_is_down() -> None:
    async def down() -> bool:
        client = connect("redis://127.0.0.1:1/0")
        try:
            return await ping(client)
        finally:
            await client.aclose()

    assert asyncio.run(down()) is False
