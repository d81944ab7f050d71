"""The e2e bench's load generator against a stand-in HTTP server on loopback: the
closed loop sends as fast as it is answered; the open loop (`rate`) keeps its schedule and
charges queueing to the latency (no coordinated omission)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from perpnet.bench.e2e import _load, _Stats

ANSWER = b'{"fills": []}'


async def _serve(delay_s: float) -> tuple[asyncio.Server, str]:
    """An HTTP/1.1 keep-alive server answering every POST with ANSWER after delay_s."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await reader.readline()).startswith(b"POST"):
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                await asyncio.sleep(delay_s)
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(ANSWER)}\r\n\r\n".encode()
                writer.write(head + ANSWER)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def _run(delay_s: float, window_s: float, rate: float | None, clients: int = 2) -> _Stats:
    async def main() -> _Stats:
        server, url = await _serve(delay_s)
        async with server:
            bodies: list[list[dict[str, Any]]] = [[{"n": i} for i in range(2_000)]] * clients
            return await _load(url, bodies, time.monotonic() + window_s, 1, rate)

    return asyncio.run(main())


def test_the_open_loop_offers_the_rate_it_is_given() -> None:
    stats = _run(delay_s=0.0, window_s=1.5, rate=100.0)
    assert 120 <= len(stats.latencies) <= 160  # 100/s for 1.5 s, not as fast as answered
    assert stats.late == 0 and not stats.errors
    closed = _run(delay_s=0.0, window_s=0.5, rate=None)
    assert len(closed.latencies) > 2 * 150  # the closed loop is bounded by answers only


def test_open_loop_latency_includes_the_wait_behind_a_slow_answer() -> None:
    # 50 ms per answer, one request in flight per client: 40/s at most, 200/s offered
    closed = sorted(_run(delay_s=0.05, window_s=1.0, rate=None).latencies)
    opened = _run(delay_s=0.05, window_s=1.0, rate=200.0)
    assert closed[len(closed) // 2] < 0.1  # each answer alone takes ~50 ms
    # every request due in the window is sent, after it if need be, none dropped
    assert 185 <= len(opened.latencies) <= 202 and opened.unsent == 0
    lat = sorted(opened.latencies)
    assert lat[-1] > 3.5  # the last ones were due ~4 s before they could go
    assert opened.late > 150


def test_the_open_loop_stops_with_its_window() -> None:
    # one request every 2 s per client, a 0.5 s window: client 0 sends once, client 1's
    # first request falls after the window; nothing waits for the next interval
    started = time.perf_counter()
    stats = _run(delay_s=0.0, window_s=0.5, rate=1.0)
    assert len(stats.latencies) == 1
    assert time.perf_counter() - started < 0.45
