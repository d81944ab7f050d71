"""The gateway's REST API against the core in-process (LocalExchange) and a real SQLite database.

Every bad input gets its own 4xx with a stable code, and changes nothing:
neither the L2 state root, nor the book, nor the owner's open orders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from perpnet.core.crypto import PrivateKey
from perpnet.core.markets import USD
from perpnet.core.orders import SignedOrder
from perpnet.gateway.app import create_app
from perpnet.gateway.local import LocalExchange
from perpnet.gateway.records import DatabaseRecords
from perpnet.gateway.schemas import OrderFields
from perpnet.gateway.settings import GatewaySettings
from perpnet.gateway.signing import SignedCancel
from perpnet.runtime.db import Database, upgrade
from perpnet.runtime.models import (
    BatchRecord,
    BatchStatus,
    DepositRecord,
    DepositStatus,
    WithdrawalRecord,
    WithdrawalStatus,
)
from perpnet.testkit import Desk, trader

ALICE, BOB, MALLORY = trader("alice"), trader("bob"), trader("mallory")
BTC = 0
PRICE = 50_000 * USD
SIZE = 10**8  # 0.01 BTC
FAR = 2**62


@dataclass
class Gateway:
    http: TestClient
    desk: Desk
    exchange: LocalExchange
    db: Database

    def order(
        self, key: PrivateKey, is_buy: bool, size: int = SIZE, price: int = PRICE, **kw: Any
    ) -> SignedOrder:
        return self.desk.order(key, BTC, is_buy, size, price, **kw)

    def post_order(self, signed: SignedOrder, **override: Any) -> Any:
        body = {**OrderFields.of(signed.order), "signature": "0x" + signed.signature.hex()}
        return self.http.post("/v1/orders", json={**body, **override})

    def fingerprint(self) -> tuple[object, ...]:
        """What a refused request must not change."""
        state = self.exchange.state
        book = self.http.get(f"/v1/markets/{BTC}/book").json()
        orders = [
            self.http.get(f"/v1/accounts/0x{k.address.hex()}/orders").json() for k in (ALICE, BOB)
        ]
        return state.root(), state.clock_ms > 0, book["bids"], book["asks"], orders


def settings_for(tmp_path: Path) -> GatewaySettings:
    url = f"sqlite:///{tmp_path / 'perpnet.db'}"
    return GatewaySettings.from_env("gateway", {"PERPNET_DATABASE_URL": url})


def local_gateway(settings: GatewaySettings, desk: Desk) -> Iterator[TestClient]:
    """A TestClient over the gateway on a LocalExchange sharing the desk's clock."""
    records = DatabaseRecords(
        {s: settings.database_of(s) for s in ("matcher", "sequencer", "bridge")}, settings.domain()
    )
    exchange = LocalExchange(desk.config, records, clock=desk.tick)
    app = create_app(exchange, settings, clock=desk.tick)
    with TestClient(app) as http:
        yield http
    records.close()


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    settings = settings_for(tmp_path)
    upgrade(settings.database_url)
    desk = Desk(now_ms=1_700_000_000_000)
    for http in local_gateway(settings, desk):
        exchange: LocalExchange = http.app.state.backend  # type: ignore[attr-defined]
        state = exchange.state
        for key in (ALICE, BOB):
            state.apply(desk.deposit(key, 10_000 * USD))
        state.apply(desk.price(BTC, PRICE))
        db = Database(settings.database_url)
        yield Gateway(http, desk, exchange, db)
        db.close()


def test_openapi_documents_every_route(gw: Gateway) -> None:
    doc = gw.http.get("/openapi.json").json()
    http_routes = {
        (route.path, method.lower())
        for route in gw.http.app.routes  # type: ignore[attr-defined]
        if hasattr(route, "methods") and route.path.startswith(("/v1", "/healthz", "/readyz"))
        for method in route.methods - {"HEAD"}
    }
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert http_routes <= documented
    for needed in (
        "/v1/orders",
        "/v1/orders/batch",
        "/v1/orders/{order_hash}/cancel",
        "/v1/orders/{order_hash}/amend",
        "/v1/markets/{market_id}/book",
        "/v1/prices",
        "/v1/markets/{market_id}/funding",
        "/v1/accounts/{account}/positions",
        "/v1/accounts/{account}/balances",
        "/v1/withdrawals",
        "/v1/deposits/{l1_id}",
        "/v1/batches/{batch_id}/proof",
    ):
        assert needed in doc["paths"]
    assert gw.http.get("/docs").status_code == 200


def test_orders_match_settle_and_show_in_positions_book_and_trades(gw: Gateway) -> None:
    ask = gw.order(BOB, False, 2 * SIZE)
    placed = gw.post_order(ask)
    assert placed.status_code == 200, placed.text
    assert placed.json()["resting"] == str(2 * SIZE)
    book = gw.http.get(f"/v1/markets/{BTC}/book").json()
    assert book["asks"] == [{"price": str(PRICE), "size": str(2 * SIZE)}]

    bid = gw.order(ALICE, True, SIZE, tif=_ioc())
    ack = gw.post_order(bid).json()
    assert ack["fills"] == [
        {
            "maker_hash": "0x" + ask.hash.hex(),
            "taker_hash": "0x" + bid.hash.hex(),
            "size": str(SIZE),
            "price": str(PRICE),
        }
    ]
    alice = gw.http.get(f"/v1/accounts/0x{ALICE.address.hex()}/positions").json()
    assert alice == [
        {"market_id": BTC, "size": str(SIZE), "funding_index": "0", "cost": alice[0]["cost"]}
    ]
    bob = gw.http.get(f"/v1/accounts/0x{BOB.address.hex()}").json()
    assert bob["positions"][0]["size"] == str(-SIZE)
    assert int(bob["risk"]["free_collateral"]) > 0
    trades = gw.http.get(f"/v1/markets/{BTC}/trades").json()
    assert [t["fill"]["size"] for t in trades] == [str(SIZE)]
    orders = gw.http.get(f"/v1/accounts/0x{BOB.address.hex()}/orders").json()
    assert [(o["order_hash"], o["remaining"]) for o in orders] == [
        ("0x" + ask.hash.hex(), str(SIZE))
    ]
    assert gw.http.get(f"/v1/orders/0x{ask.hash.hex()}").json()["status"] == "open"
    price = gw.http.get(f"/v1/markets/{BTC}/price").json()
    assert price["price"] == str(PRICE)
    assert gw.http.get(f"/v1/markets/{BTC}/funding").json()["funding_index"] == "0"


def _ioc() -> Any:
    from perpnet.core.orders import TimeInForce

    return TimeInForce.IOC


def _resign(gw: Gateway, signed: SignedOrder, key: PrivateKey) -> str:
    return "0x" + key.sign(signed.order.digest(gw.desk.config.domain)).hex()


BadOrder = Callable[[Gateway], tuple[SignedOrder, dict[str, Any]]]
BAD_ORDERS: dict[str, tuple[BadOrder, int, str]] = {
    "missing field": (lambda g: (g.order(ALICE, True), {"size": None}), 400, "INVALID_FIELD"),
    "float size": (lambda g: (g.order(ALICE, True), {"size": 1.5}), 400, "INVALID_FIELD"),
    "negative size": (lambda g: (g.order(ALICE, True), {"size": "-1"}), 400, "INVALID_FIELD"),
    "u128 overflow": (
        lambda g: (g.order(ALICE, True), {"price": str(2**128)}),
        400,
        "INVALID_FIELD",
    ),
    "unknown field": (lambda g: (g.order(ALICE, True), {"leverage": 100}), 400, "INVALID_FIELD"),
    "bad address": (lambda g: (g.order(ALICE, True), {"owner": "0x1234"}), 400, "INVALID_FIELD"),
    "bad kind": (lambda g: (g.order(ALICE, True), {"kind": "ICEBERG"}), 400, "INVALID_FIELD"),
    "string bool": (lambda g: (g.order(ALICE, True), {"is_buy": "yes"}), 400, "INVALID_FIELD"),
    "short signature": (
        lambda g: (g.order(ALICE, True), {"signature": "0x00"}),
        400,
        "INVALID_FIELD",
    ),
    "unknown market": (lambda g: (g.order(ALICE, True), {"market": 77}), 404, "UNKNOWN_MARKET"),
    "off tick": (lambda g: (g.order(ALICE, True, price=PRICE + 1), {}), 422, "OFF_TICK"),
    "off step": (lambda g: (g.order(ALICE, True, size=SIZE + 1), {}), 422, "OFF_STEP"),
    "expired": (lambda g: (g.order(ALICE, True, expiry_ms=5), {}), 422, "EXPIRED"),
    "tampered price": (
        lambda g: (g.order(ALICE, True), {"price": str(PRICE - USD)}),
        401,
        "BAD_SIGNATURE",
    ),
    "signed by another key": (
        lambda g: (o := g.order(ALICE, True), {"signature": _resign(g, o, MALLORY)}),
        401,
        "BAD_SIGNATURE",
    ),
    "no L2 account": (lambda g: (g.order(MALLORY, True), {}), 404, "UNKNOWN_ACCOUNT"),
}


@pytest.mark.parametrize("case", list(BAD_ORDERS))
def test_each_bad_order_gets_its_4xx_and_changes_nothing(gw: Gateway, case: str) -> None:
    gw.post_order(gw.order(BOB, False))  # something in the book to disturb
    make, status, code = BAD_ORDERS[case]
    signed, override = make(gw)
    before = gw.fingerprint()
    reply = gw.post_order(signed, **override)
    assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), reply.text
    assert reply.json()["error"]["message"]
    assert gw.fingerprint() == before


def _body(signed: SignedOrder, **override: Any) -> dict[str, Any]:
    return {**OrderFields.of(signed.order), "signature": "0x" + signed.signature.hex(), **override}


def test_a_batch_answers_each_order_as_a_single_post_would_in_the_order_given(
    gw: Gateway,
) -> None:
    ask, bid = gw.order(BOB, False), gw.order(ALICE, True)
    bad = [(make(gw), status, code) for make, status, code in BAD_ORDERS.values()]
    orders = [_body(ask), *(_body(s, **o) for (s, o), _, _ in bad), _body(bid)]
    reply = gw.http.post("/v1/orders/batch", json={"orders": orders})
    assert reply.status_code == 200, reply.text
    first, *refused, last = reply.json()["results"]
    assert (first["status"], first["ack"]["resting"]) == (200, str(SIZE))
    assert [(r["status"], r["error"]["code"]) for r in refused] == [(s, c) for _, s, c in bad]
    assert all(r["error"]["message"] and r.get("ack") is None for r in refused)
    # the bid came after the ask: it took it, and nothing refused reached the book
    assert [f["maker_hash"] for f in last["ack"]["fills"]] == ["0x" + ask.hash.hex()]
    book = gw.http.get(f"/v1/markets/{BTC}/book").json()
    assert (book["bids"], book["asks"]) == ([], [])


@pytest.mark.parametrize("orders", [[], "not a list", [{}] * 101], ids=["empty", "str", "101"])
def test_a_malformed_batch_is_400_and_changes_nothing(gw: Gateway, orders: Any) -> None:
    gw.post_order(gw.order(BOB, False))
    before = gw.fingerprint()
    reply = gw.http.post("/v1/orders/batch", json={"orders": orders})
    assert (reply.status_code, reply.json()["error"]["code"]) == (400, "INVALID_FIELD")
    assert gw.fingerprint() == before


def test_replayed_order_is_409_and_changes_nothing(gw: Gateway) -> None:
    signed = gw.order(BOB, False)
    assert gw.post_order(signed).status_code == 200
    before = gw.fingerprint()
    again = gw.post_order(signed)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "DUPLICATE_ORDER")
    assert gw.fingerprint() == before


def test_cancel_needs_the_owners_fresh_signature(gw: Gateway) -> None:
    signed = gw.order(BOB, False)
    gw.post_order(signed)
    domain = gw.desk.config.domain

    def cancel(key: PrivateKey, owner: bytes, expiry: int, order_hash: bytes = signed.hash) -> Any:
        c = SignedCancel(owner, order_hash, expiry).signed(key, domain)
        body = {
            "owner": "0x" + owner.hex(),
            "expiry": str(expiry),
            "signature": "0x" + c.signature.hex(),
        }
        return gw.http.post(f"/v1/orders/0x{order_hash.hex()}/cancel", json=body)

    before = gw.fingerprint()
    for reply, status, code in (
        (cancel(MALLORY, BOB.address, FAR), 401, "BAD_SIGNATURE"),
        (cancel(MALLORY, MALLORY.address, FAR), 403, "NOT_OWNER"),
        (cancel(BOB, BOB.address, 5), 422, "EXPIRED"),
        (cancel(BOB, BOB.address, FAR, bytes(32)), 404, "UNKNOWN_ORDER"),
    ):
        assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), reply.text
        assert gw.fingerprint() == before
    bad_hash = gw.http.post(
        "/v1/orders/0x12/cancel",
        json={"owner": "0x" + BOB.address.hex(), "expiry": str(FAR), "signature": "0x" + "00" * 65},
    )
    assert bad_hash.status_code == 400
    done = cancel(BOB, BOB.address, FAR)
    assert done.status_code == 200 and done.json()["reason"] == "USER"
    assert gw.http.get(f"/v1/markets/{BTC}/book").json()["asks"] == []


def test_amend_replaces_and_refuses_another_owner(gw: Gateway) -> None:
    old = gw.order(BOB, False)
    gw.post_order(old)
    new = gw.order(BOB, False, price=PRICE + USD)
    body = {**OrderFields.of(new.order), "signature": "0x" + new.signature.hex()}
    theirs = gw.order(ALICE, False)
    their_body = {**OrderFields.of(theirs.order), "signature": "0x" + theirs.signature.hex()}
    before = gw.fingerprint()
    refused = gw.http.post(f"/v1/orders/0x{old.hash.hex()}/amend", json=their_body)
    assert refused.status_code in (403, 422), refused.text
    assert gw.fingerprint() == before
    amended = gw.http.post(f"/v1/orders/0x{old.hash.hex()}/amend", json=body)
    assert amended.status_code == 200, amended.text
    asks = gw.http.get(f"/v1/markets/{BTC}/book").json()["asks"]
    assert asks == [{"price": str(PRICE + USD), "size": str(SIZE)}]


def _withdraw_body(
    gw: Gateway, key: PrivateKey, value: int, nonce: int, **override: Any
) -> dict[str, Any]:
    tx = gw.desk.withdraw(key, value, nonce)
    body = {
        "owner": "0x" + tx.owner.hex(),
        "subaccount": 0,
        "amount": str(tx.amount),
        "recipient": "0x" + tx.recipient.hex(),
        "nonce": str(tx.nonce),
        "expiry": str(tx.expiry_ms),
        "signature": "0x" + tx.signature.hex(),
    }
    return {**body, **override}


def test_withdrawal_is_signed_and_each_bad_one_changes_nothing(gw: Gateway) -> None:
    alice = f"/v1/accounts/0x{ALICE.address.hex()}/balances"
    cases = [
        (_withdraw_body(gw, ALICE, 100 * USD, 1), 409, "BAD_NONCE"),
        (_withdraw_body(gw, ALICE, 10**6 * USD, 0), 422, "INSUFFICIENT_COLLATERAL"),
        (_withdraw_body(gw, ALICE, 100 * USD, 0, amount=str(200 * USD)), 401, "BAD_SIGNATURE"),
        (_withdraw_body(gw, ALICE, 100 * USD, 0, amount="0"), 400, "INVALID_FIELD"),
        (_withdraw_body(gw, MALLORY, 100 * USD, 0), 404, "UNKNOWN_ACCOUNT"),
        (_withdraw_body(gw, ALICE, 100 * USD, 0, recipient="alice"), 400, "INVALID_FIELD"),
    ]
    before = gw.fingerprint()
    for body, status, code in cases:
        reply = gw.http.post("/v1/withdrawals", json=body)
        assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), reply.text
        assert gw.fingerprint() == before
    ok = gw.http.post("/v1/withdrawals", json=_withdraw_body(gw, ALICE, 100 * USD, 0))
    assert ok.status_code == 200, ok.text
    assert gw.http.get(alice).json()["collateral"] == str(9_900 * USD)


def test_transfer_moves_collateral(gw: Gateway) -> None:
    tx = gw.desk.transfer(ALICE, BOB.address, 5 * USD, 0)
    body = {
        "owner": "0x" + tx.owner.hex(),
        "to_owner": "0x" + tx.to_owner.hex(),
        "amount": str(tx.amount),
        "nonce": "0",
        "expiry": str(tx.expiry_ms),
        "signature": "0x" + tx.signature.hex(),
    }
    assert gw.http.post("/v1/transfers", json=body).status_code == 200
    assert gw.http.get(f"/v1/accounts/0x{BOB.address.hex()}/balances").json()["collateral"] == str(
        10_005 * USD
    )
    replay = gw.http.post("/v1/transfers", json=body)
    assert (replay.status_code, replay.json()["error"]["code"]) == (409, "BAD_NONCE")


def test_accounts_by_id_and_proof_and_unknowns(gw: Gateway) -> None:
    alice = gw.http.get(f"/v1/accounts/0x{ALICE.address.hex()}").json()
    by_id = gw.http.get(f"/v1/accounts/{alice['account_id']}").json()
    assert by_id == alice
    proof = gw.http.get(f"/v1/accounts/{alice['account_id']}/proof").json()
    assert len(proof["siblings"]) == gw.desk.config.tree_depth
    for path, status in (
        ("/v1/accounts/0xzz", 400),
        (f"/v1/accounts/0x{MALLORY.address.hex()}", 404),
        ("/v1/accounts/99999", 404),
        (f"/v1/accounts/0x{ALICE.address.hex()}?subaccount=-1", 400),
        ("/v1/markets/9", 404),
        ("/v1/markets/x/book", 400),
        ("/v1/nowhere", 404),
    ):
        reply = gw.http.get(path)
        assert reply.status_code == status, (path, reply.text)
        assert set(reply.json()["error"]) >= {"code", "message"}


def test_records_show_stages_and_missing_ones_are_404(gw: Gateway) -> None:
    owner = ALICE.address

    def seed(session: Any) -> None:
        batch = BatchRecord(
            id=0,
            old_root=bytes(32),
            new_root=b"\x01" * 32,
            first_seq=1,
            last_seq=3,
            public_inputs=b"",
            state_diff=b"",
            status=None,
        )
        batch.advance(BatchStatus.SEQUENCED, 10)
        batch.advance(BatchStatus.PROVEN, 30)
        deposit = DepositRecord(
            l1_id=0,
            owner=owner,
            subaccount=0,
            amount=2**100,
            l1_block=5,
            l1_tx=b"\x02" * 32,
            status=None,
        )
        deposit.advance(DepositStatus.SEEN, 1)
        deposit.advance(DepositStatus.CREDITED, 4)
        withdrawal = WithdrawalRecord(account=2, recipient=owner, amount=7, status=None)
        withdrawal.advance(WithdrawalStatus.REQUESTED, 100)
        session.add_all([batch, deposit, withdrawal])

    import asyncio

    asyncio.run(gw.db.run(seed))
    batches = gw.http.get("/v1/batches").json()
    assert [(b["batch_id"], b["status"]) for b in batches] == [(0, "proven")]
    assert batches[0]["stages"] == [
        {"name": "sequenced", "at_ms": 10},
        {"name": "proven", "at_ms": 30},
    ]
    deposits = gw.http.get(f"/v1/deposits?owner=0x{owner.hex()}").json()
    assert deposits[0]["amount"] == str(2**100) and deposits[0]["status"] == "credited"
    assert gw.http.get("/v1/deposits/0").json()["l1_block"] == 5
    withdrawals = gw.http.get(f"/v1/withdrawals?recipient=0x{owner.hex()}").json()
    assert withdrawals[0]["stages"] == [{"name": "requested", "at_ms": 100}]
    for path in ("/v1/batches/9", "/v1/batches/0/proof", "/v1/deposits/9", "/v1/withdrawals/9"):
        reply = gw.http.get(path)
        assert (reply.status_code, reply.json()["error"]["code"]) == (404, "NOT_FOUND"), path
    assert gw.http.get("/v1/batches?limit=0").status_code == 400


def test_records_of_a_service_that_never_ran_are_503(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)  # not migrated: no tables
    for http in local_gateway(settings, Desk()):
        reply = http.get("/v1/batches")
        assert (reply.status_code, reply.json()["error"]["code"]) == (503, "UNAVAILABLE")


def test_info_gives_the_signing_domain(gw: Gateway) -> None:
    info = gw.http.get("/v1/info").json()
    assert info["chain_id"] == gw.desk.config.domain.chain_id
    assert info["types"]["Cancel"] == "Cancel(address owner,bytes32 orderHash,uint64 expiry)"
    assert gw.http.get("/readyz").json() == {"ready": True}


def test_request_latency_is_measured_by_route_and_status(gw: Gateway) -> None:
    gw.post_order(gw.order(BOB, False))
    gw.post_order(gw.order(BOB, False, price=PRICE + 1))
    labels = {"method": "POST", "route": "/v1/orders"}
    ok = REGISTRY.get_sample_value(
        "gateway_http_request_duration_seconds_count", {**labels, "status": "200"}
    )
    bad = REGISTRY.get_sample_value(
        "gateway_http_request_duration_seconds_count", {**labels, "status": "422"}
    )
    assert ok and ok >= 1 and bad and bad >= 1
