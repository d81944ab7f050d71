"""The running testnet end to end, against the containers: deposit, trade, withdraw, claim.

Then Prometheus: every service's target is up (each prover replica too), and
the pipeline's headline series (proof cadence, withdrawal latency) have samples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from compose.conftest import Stack, Trader, wait_for
from perpnet.core.markets import USD
from perpnet.core.orders import TimeInForce

pytestmark = pytest.mark.compose

BTC = 0
SIZE = 10**7  # 0.001 BTC
SERVICES = {"gateway", "matcher", "margin", "oracle", "sequencer", "prover", "bridge"}


def test_gateway_serves_the_api_and_its_openapi_docs(stack: Stack, deployment: Path) -> None:
    info = stack.get("/v1/info")
    rollup = json.loads(deployment.read_text())["addresses"]["rollup"]
    assert info["verifying_contract"].lower() == rollup.lower()  # one domain for every service
    assert stack.http.get(stack.gateway_url + "/docs").status_code == 200
    assert "/v1/orders" in stack.get("/openapi.json")["paths"]
    assert {m["symbol"] for m in stack.get("/v1/markets")} >= {"BTC-USD", "ETH-USD"}
    wait_for("oracle prices", lambda: stack.get("/v1/prices"), 60)


def oracle_price(stack: Stack, market: int) -> int:
    tick = int(stack.get(f"/v1/markets/{market}")["tick_size"])
    price = wait_for(
        "an oracle price",
        lambda: next(
            (int(p["price"]) for p in stack.get("/v1/prices") if p["market_id"] == market), 0
        ),
        60,
    )
    return price // tick * tick


def test_deposit_trade_withdraw_claim(
    stack: Stack, deployment: Path, make_trader: Callable[[str, int], Trader], trader_usd: int
) -> None:
    alice = make_trader("alice", trader_usd)
    bob = make_trader("bob", 0)

    # bob through the `perpnet` command, unchanged: the stack's ports are its defaults
    env = {**os.environ, "PERPNET_GATEWAY_URL": stack.gateway_url,
           "PERPNET_L1_RPC_URL": stack.rpc_url, "PERPNET_L1_DEPLOYMENT": str(deployment),
           "PERPNET_KEY_FILE": str(bob.key_file)}  # fmt: skip
    perpnet = [str(Path(sys.executable).parent / "perpnet")]
    for args in (["faucet", str(trader_usd)], ["deposit", str(trader_usd)]):
        done = subprocess.run([*perpnet, "client", *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    wait_for(
        "bob's deposit credited on L2",
        lambda: int(bob.client.balances()["collateral"]) == trader_usd,
        120,
    )
    deposits = stack.get("/v1/deposits", owner=bob.client.address)
    assert deposits and deposits[0]["amount"] == str(trader_usd)

    # trade: bob rests a sell at the oracle price, alice takes it
    price = oracle_price(stack, BTC)
    resting = bob.client.place_order(BTC, False, SIZE, price)
    assert resting["resting"] == str(SIZE), resting
    taken = alice.client.place_order(BTC, True, SIZE, price, tif=TimeInForce.IOC)
    assert [f["size"] for f in taken["fills"]] == [str(SIZE)], taken
    wait_for(
        "both positions settled",
        lambda: (
            [p["size"] for p in alice.client.positions()] == [str(SIZE)]
            and [p["size"] for p in bob.client.positions()] == [str(-SIZE)]
        ),
        60,
    )
    done = subprocess.run([*perpnet, "client", "positions"], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0 and str(-SIZE) in done.stdout, done.stdout + done.stderr

    # withdraw on L2, wait for its batch to be verified on L1, claim
    amount = 100 * USD
    l1_before = alice.wallet.balance()
    submitted = alice.client.withdraw(amount)
    assert int(submitted["seq"]) > 0
    withdrawal = wait_for(
        "the withdrawal verified on L1 (claimable)",
        lambda: next(
            (w for w in alice.client.withdrawals() if w["status"] in ("verified", "claimed")),
            None,
        ),
        240,
    )
    assert withdrawal["amount"] == str(amount)
    assert alice.wallet.claimable() == amount
    assert alice.wallet.claim() == amount
    assert alice.wallet.balance() == l1_before + amount
    assert alice.wallet.claimable() == 0


def test_prometheus_scrapes_every_service(stack: Stack) -> None:
    provers = len(stack.containers("prover"))
    assert provers >= 1

    def all_up() -> list[dict[str, object]] | None:
        targets = stack.prometheus("/api/v1/targets", state="active")["activeTargets"]
        jobs = [t["labels"]["job"] for t in targets]
        healthy = all(t["health"] == "up" for t in targets)
        if healthy and set(jobs) >= SERVICES and jobs.count("prover") == provers:
            return list(targets)
        return None

    targets = wait_for("every target up", all_up, 90, every=2.0)
    assert len(targets) >= len(SERVICES) + provers - 1


@pytest.mark.parametrize(
    "series",
    ["perpnet_bridge_proof_cadence_seconds_count", "perpnet_withdrawal_latency_seconds_count"],
)
def test_pipeline_series_have_samples(stack: Stack, series: str) -> None:
    def samples() -> float:
        result = stack.prometheus("/api/v1/query", query=f"sum({series})")["result"]
        return float(result[0]["value"][1]) if result else 0.0

    assert wait_for(f"samples of {series}", samples, 90, every=2.0) > 0
