"""The SDK and the CLI against a gateway on the core (LocalExchange), and against a real anvil.

The L2 side talks HTTP to the real FastAPI app through its TestClient; the L1
side sends real transactions to the rollup contract. The escape test posts a
real batch to L1 and takes the account's Merkle proof from the gateway.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from l1.conftest import GRACE_S, World
from perpnet.client import cli
from perpnet.client.sdk import Client, GatewayError, L1Wallet, load_key, new_key, save_key
from perpnet.core.markets import USD
from perpnet.core.orders import TimeInForce
from perpnet.core.state import ExchangeState
from perpnet.gateway.app import create_app
from perpnet.gateway.local import LocalExchange
from perpnet.gateway.records import DatabaseRecords
from perpnet.gateway.settings import GatewaySettings
from perpnet.testkit import Desk, trader

BTC = 0
PRICE = 50_000 * USD
SIZE = 10**8


def gateway(tmp_path: Path, desk: Desk, state: ExchangeState | None = None) -> Iterator[TestClient]:
    """The gateway app on a LocalExchange (optionally over an existing L2 state)."""
    url = f"sqlite:///{tmp_path / 'perpnet.db'}"
    settings = GatewaySettings.from_env("gateway", {"PERPNET_DATABASE_URL": url})
    records = DatabaseRecords(
        dict.fromkeys(("matcher", "sequencer", "bridge"), url), desk.config.domain
    )
    exchange = LocalExchange(desk.config, records, clock=desk.tick)
    if state is not None:
        exchange.state = state
    with TestClient(create_app(exchange, settings, clock=desk.tick)) as http:
        yield http
    records.close()


@pytest.fixture
def desk() -> Desk:
    return Desk(now_ms=1_700_000_000_000)


@pytest.fixture
def http(tmp_path: Path, desk: Desk) -> Iterator[TestClient]:
    yield from gateway(tmp_path, desk)


def funded(http: TestClient, desk: Desk, name: str) -> Client:
    key = trader(name)
    exchange: LocalExchange = http.app.state.backend  # type: ignore[attr-defined]
    exchange.state.apply(desk.deposit(key, 10_000 * USD))
    return Client("http://gateway", key, http=http)


def test_key_file_round_trip_is_private(tmp_path: Path) -> None:
    key = new_key()
    path = tmp_path / "k" / "key.json"
    save_key(key, path)
    assert load_key(path).address == key.address
    assert path.stat().st_mode & 0o077 == 0


def test_trade_cancel_amend_positions_withdraw_transfer(http: TestClient, desk: Desk) -> None:
    exchange: LocalExchange = http.app.state.backend  # type: ignore[attr-defined]
    alice, bob = funded(http, desk, "alice"), funded(http, desk, "bob")
    exchange.state.apply(desk.price(BTC, PRICE))

    resting = bob.place_order(BTC, False, 2 * SIZE, PRICE)
    assert resting["resting"] == str(2 * SIZE)
    amended = bob.amend_order(resting["order_hash"], BTC, False, 2 * SIZE, PRICE + USD)
    assert [o["order_hash"] for o in bob.orders()] == [amended["order_hash"]]
    filled = alice.place_order(BTC, True, SIZE, PRICE + USD, tif=TimeInForce.IOC)
    assert filled["fills"][0]["size"] == str(SIZE)
    assert alice.positions()[0]["size"] == str(SIZE)
    assert bob.cancel_order(amended["order_hash"])["size"] == str(SIZE)
    assert bob.orders() == []

    with pytest.raises(GatewayError) as refused:
        bob.cancel_order(amended["order_hash"])
    assert (refused.value.status, refused.value.code) == (404, "UNKNOWN_ORDER")
    with pytest.raises(GatewayError) as off_tick:
        alice.place_order(BTC, True, SIZE, PRICE + 1)
    assert (off_tick.value.status, off_tick.value.code) == (422, "OFF_TICK")

    before = int(alice.balances()["collateral"])
    alice.withdraw(100 * USD)
    alice.transfer(bob.address, 5 * USD)
    assert int(alice.balances()["collateral"]) == before - 105 * USD
    assert alice.account()["nonce"] == "2"


def test_cli_places_lists_and_cancels(http: TestClient, desk: Desk, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    runner = CliRunner()
    key_file = tmp_path / "key.json"
    made = runner.invoke(cli.app, ["key", "new", "--key-file", str(key_file)])
    assert made.exit_code == 0, made.output
    address = json.loads(made.output)["address"]
    assert runner.invoke(cli.app, ["key", "new", "--key-file", str(key_file)]).exit_code == 1
    exchange: LocalExchange = http.app.state.backend  # type: ignore[attr-defined]
    exchange.state.apply(desk.deposit(bytes.fromhex(address[2:]), 1_000 * USD))
    exchange.state.apply(desk.price(BTC, PRICE))
    # The CLI builds its own Client; route it to the in-process gateway.
    monkeypatch.setattr(
        cli, "_client", lambda _g, k, s=0: Client("http://gw", load_key(k), subaccount=s, http=http)
    )
    common = ["--key-file", str(key_file)]
    placed = runner.invoke(cli.app, ["order", "place", "0", "buy", str(SIZE), str(PRICE), *common])
    assert placed.exit_code == 0, placed.output
    order_hash = json.loads(placed.output)["order_hash"]
    listed = runner.invoke(cli.app, ["order", "list", *common])
    assert listed.exit_code == 0 and "open" in listed.output
    assert runner.invoke(cli.app, ["positions", *common]).exit_code == 0
    assert runner.invoke(cli.app, ["order", "cancel", order_hash, *common]).exit_code == 0
    again = runner.invoke(cli.app, ["order", "cancel", order_hash, *common])
    assert again.exit_code == 1 and "UNKNOWN_ORDER" in again.output
    bad = runner.invoke(cli.app, ["order", "place", "0", "up", "1", "1", *common])
    assert bad.exit_code == 2


def test_l1_faucet_deposit_forced_request_freeze_and_escape(world: World, tmp_path: Path) -> None:
    alice_key = trader("alice")
    world.user("alice")  # gas for alice's address
    wallet = L1Wallet(world.w3, world.deployment, alice_key)
    wallet.faucet(3_000 * USD)
    assert wallet.balance() == 3_000 * USD
    deposit_id = wallet.deposit(2_000 * USD)
    assert wallet.balance() == 1_000 * USD
    world.apply(world.l2_deposit(deposit_id))
    world.post(world.builder.cut())

    for http in gateway(tmp_path, world.desk, world.state):
        client = Client("http://gateway", alice_key, http=http)
        request_id = wallet.forced_withdrawal(100 * USD)
        world.anvil.increase_time(GRACE_S + 1)
        wallet.freeze(request_id)
        assert wallet.frozen()
        assert wallet.escape(client.proof()) == 2_000 * USD
        assert wallet.balance() == 3_000 * USD
        assert wallet.claimable() == 0
