"""WebSocket streams: book, trades and account updates; slow readers are dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from perpnet.core.markets import USD
from perpnet.core.orders import TimeInForce
from perpnet.gateway.local import LocalExchange
from perpnet.gateway.schemas import OrderFields
from perpnet.gateway.streams import Hub
from perpnet.testkit import Desk, trader

from .test_gateway import BTC, PRICE, SIZE, local_gateway, settings_for

ALICE, BOB = trader("alice"), trader("bob")


@pytest.fixture
def ws_gateway(tmp_path: Path) -> Iterator[tuple[TestClient, Desk]]:
    desk = Desk(now_ms=1_700_000_000_000)
    for http in local_gateway(settings_for(tmp_path), desk):
        exchange: LocalExchange = http.app.state.backend  # type: ignore[attr-defined]
        for key in (ALICE, BOB):
            exchange.state.apply(desk.deposit(key, 10_000 * USD))
        exchange.state.apply(desk.price(BTC, PRICE))
        yield http, desk


def test_book_trades_and_account_streams(ws_gateway: tuple[TestClient, Desk]) -> None:
    http, desk = ws_gateway
    ask = desk.order(BOB, BTC, False, SIZE, PRICE)
    bid = desk.order(ALICE, BTC, True, SIZE, PRICE, tif=TimeInForce.IOC)
    with (
        http.websocket_connect(f"/v1/ws/book/{BTC}") as book,
        http.websocket_connect(f"/v1/ws/trades/{BTC}") as trades,
        http.websocket_connect(f"/v1/ws/account/0x{ALICE.address.hex()}") as account,
    ):
        assert book.receive_json()["asks"] == []  # the snapshot
        for signed in (ask, bid):
            body = {**OrderFields.of(signed.order), "signature": "0x" + signed.signature.hex()}
            assert http.post("/v1/orders", json=body).status_code == 200
        assert book.receive_json()["asks"] == [{"price": str(PRICE), "size": str(SIZE)}]
        assert book.receive_json()["asks"] == []
        trade = trades.receive_json()
        assert trade["fill"]["taker_hash"] == "0x" + bid.hash.hex() and trade["taker_is_buy"]
        update = account.receive_json()
        assert update["type"] == "account" and update["positions"][0]["size"] == str(SIZE)


def test_unknown_market_stream_is_closed(ws_gateway: tuple[TestClient, Desk]) -> None:
    http, _ = ws_gateway
    with pytest.raises(WebSocketDisconnect), http.websocket_connect("/v1/ws/book/99") as ws:
        ws.receive_json()


def test_a_slow_subscriber_is_dropped_and_the_others_keep_up() -> None:
    async def scenario() -> None:
        hub = Hub(queue_size=2)
        slow, fast = hub.subscribe("trades:0"), hub.subscribe("trades:0")
        for i in range(3):
            hub.publish("trades:0", {"i": i})
            fast.queue.get_nowait()
        assert slow.queue.get_nowait() is None  # the end marker: its socket closes with 1013
        assert hub.topics() == {"trades:0"}
        hub.publish("trades:0", {"i": 3})
        assert fast.queue.get_nowait() == {"i": 3}
        assert [m["i"] for m in hub.recent("trades:0", 2)] == [3, 2]

    asyncio.run(scenario())
