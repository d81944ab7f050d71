"""WebSocket fan-out: topics, a bounded queue per client, slow clients dropped.

`Hub.publish` never waits: it puts a message on each subscriber's queue, and
a subscriber whose queue is full is dropped (its queue is replaced by one end
marker, and its socket closes with 1013 "try again later"). One slow reader
therefore costs the server one queue of memory, never a stalled feed.

Topics: `book:<market>`, `trades:<market>`, `account:<0xaddress>`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from typing import Any

from prometheus_client import Counter, Gauge
from starlette.websockets import WebSocket, WebSocketDisconnect

Message = dict[str, Any]

WS_CLIENTS = Gauge("gateway_ws_clients", "Open WebSocket subscriptions, by stream.", ["stream"])
WS_DROPPED = Counter(
    "gateway_ws_dropped", "WebSocket clients dropped for reading too slowly.", ["stream"]
)
WS_SENT = Counter("gateway_ws_messages_sent", "Messages sent to WebSocket clients.", ["stream"])
CLOSE_TOO_SLOW = 1013


def book_topic(market_id: int) -> str:
    return f"book:{market_id}"


def trades_topic(market_id: int) -> str:
    return f"trades:{market_id}"


def account_topic(owner: bytes) -> str:
    return f"account:0x{owner.hex()}"


def stream_of(topic: str) -> str:
    return topic.partition(":")[0]


class Subscription:
    __slots__ = ("queue", "topic")

    def __init__(self, topic: str, size: int) -> None:
        self.topic = topic
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue(size)


class Hub:
    """Topic subscriptions with bounded queues; also keeps the recent trades of each market."""

    def __init__(self, queue_size: int = 256, recent_trades: int = 1000) -> None:
        self.queue_size = queue_size
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._recent: dict[str, deque[Message]] = defaultdict(lambda: deque(maxlen=recent_trades))

    def subscribe(self, topic: str) -> Subscription:
        sub = Subscription(topic, self.queue_size)
        self._subs[topic].add(sub)
        WS_CLIENTS.labels(stream_of(topic)).inc()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.topic)
        if subs is not None and sub in subs:
            subs.discard(sub)
            WS_CLIENTS.labels(stream_of(sub.topic)).dec()
            if not subs:
                del self._subs[sub.topic]

    def topics(self) -> set[str]:
        """Topics somebody listens to (pollers feed only these)."""
        return set(self._subs)

    def publish(self, topic: str, message: Message) -> None:
        if topic.startswith("trades:"):
            self._recent[topic].append(message)
        for sub in list(self._subs.get(topic, ())):
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._drop(sub)

    def recent(self, topic: str, limit: int) -> list[Message]:
        """The newest `limit` messages of a trades topic, newest first."""
        kept = self._recent.get(topic, ())
        return list(reversed(list(kept)[-limit:])) if limit else []

    def _drop(self, sub: Subscription) -> None:
        self.unsubscribe(sub)
        WS_DROPPED.labels(stream_of(sub.topic)).inc()
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)


async def _until_disconnect(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive()  # clients have nothing to say; this only notices them leave


async def pump(ws: WebSocket, hub: Hub, topic: str, first: Message | None) -> None:
    """Serve one subscriber: an optional snapshot, then every message until either side leaves."""
    sub = hub.subscribe(topic)
    stream = stream_of(topic)
    left = asyncio.create_task(_until_disconnect(ws))
    try:
        if first is not None:
            await ws.send_json(first)
        while True:
            getting = asyncio.create_task(sub.queue.get())
            done, _ = await asyncio.wait({getting, left}, return_when=asyncio.FIRST_COMPLETED)
            if getting not in done:
                getting.cancel()
                return
            message = getting.result()
            if message is None:
                await ws.close(CLOSE_TOO_SLOW, "too slow: dropped")
                return
            await ws.send_json(message)
            WS_SENT.labels(stream).inc()
    except WebSocketDisconnect:
        return
    finally:
        hub.unsubscribe(sub)
        left.cancel()
