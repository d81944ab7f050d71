"""The running testnet, end to end: traders deposit on L1, trade with leverage, pay funding,
withdraw and claim on L1; every batch is proven and verified; collateral is conserved across
L1 and L2 to the quantum; the pipeline's metrics are exposed and move. In the issue's order:
two traders deposit and trade with leverage, funding is paid, an oracle move liquidates one of
them, the other withdraws and claims on L1.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from e2e.harness import (
    BTC,
    ONE_BTC,
    START_PRICES,
    Devnet,
    Trader,
    running_devnet,
    wait_for,
)
from perpnet.client.sdk import GatewayError
from perpnet.core.markets import USD
from perpnet.core.txs import Deleverage, FundingTick, Liquidate, Withdraw

pytestmark = pytest.mark.e2e

PRICE = START_PRICES["BTC-USD"]
DEPOSIT = 10_000 * USD


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with running_devnet(Path(tmp_path_factory.mktemp("story"))) as devnet:
        yield devnet


def _deposit_both(devnet: Devnet, *traders: Trader) -> None:
    for t in traders:
        t.deposit(DEPOSIT)
    for t in traders:
        wait_for(f"{t.name}'s deposit credited on L2", lambda t=t: t.collateral() == DEPOSIT, 60)


def _open_long_short(long: Trader, short: Trader, size: int, price: int) -> None:
    rest = short.client.place_order(BTC, False, size, price)
    assert int(rest["resting"]) == size and not rest["fills"]
    take = long.client.place_order(BTC, True, size, price)
    assert [(int(f["size"]), int(f["price"])) for f in take["fills"]] == [(size, price)]
    assert take["fills"][0]["maker_hash"] == rest["order_hash"]
    assert long.size() == size and short.size() == -size


def _heard_until(
    ws: ClientConnection, done: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """Messages from a WebSocket up to the first that is `done` (TimeoutError if none)."""
    deadline = time.monotonic() + timeout_s
    heard: list[dict[str, Any]] = []
    while not heard or not done(heard[-1]):
        heard.append(json.loads(ws.recv(timeout=max(0.0, deadline - time.monotonic()))))
    return heard


def _all_verified(devnet: Devnet, timeout_s: float = 90.0) -> int:
    """Wait until every batch cut so far is verified on L1; returns the last of them."""
    target = devnet.state().next_batch_id - 1
    wait_for(f"batch {target} verified on L1", lambda: devnet.verified_batch() >= target, timeout_s)
    for batch_id in range(target + 1):  # and recorded so: the bridge reads receipts a poll later
        wait_for(
            f"batch {batch_id} recorded verified",
            lambda b=batch_id: devnet.batch(b).status == "verified" or None,
            15,
        )
    return target


def _verified_root_matches(devnet: Devnet) -> int:
    """L1's state root is the recorded root of the batch it last verified; returns that batch."""

    def settled() -> int | None:
        before = devnet.verified_batch()
        root = devnet.rollup.state_root()
        if devnet.verified_batch() != before:
            return None
        assert root == devnet.batch(before).new_root, f"L1 root differs at batch {before}"
        return before + 1  # truthy even for batch 0

    return wait_for("a stable verified batch", settled, 30) - 1


def _conserved(devnet: Devnet) -> None:
    """Collateral is conserved across L1 and L2, to the quantum, at L1's verified state."""
    traders = devnet.traders
    verified = _verified_root_matches(devnet)
    replay = devnet.replay_batch(verified)
    state = replay.state
    l2_total = replay.total_net_collateral()
    # L2 on its own: what was credited less what was withdrawn, whatever trades and funding did
    assert l2_total == state.total_deposited - state.total_withdrawn
    # L1 holds exactly that (every deposit consumed, every withdrawal claimed)
    deposited = sum(t.deposited for t in traders)
    claimed = sum(t.claimed for t in traders)
    assert state.next_deposit_id == devnet.rollup.rollup.functions.next_deposit_id().call()
    assert sum(t.wallet.claimable() for t in traders) == 0
    assert devnet.rollup_balance() == deposited - claimed == l2_total
    for t in traders:  # and every token a trader was given is in their wallet or the rollup
        assert t.wallet.balance() == t.minted - t.deposited + t.claimed


METRICS = {  # process -> (sample prefix, must increase)
    "sequencer": [("perpnet_sequencer_txs_total", True), ("perpnet_sequencer_last_seq", True)],
    "matcher": [
        ("perpnet_matcher_order_ack_seconds_count", True),
        ("perpnet_matcher_fills_total", True),
        ("perpnet_matcher_matching_seconds_count", True),
        ("perpnet_matcher_margin_check_seconds_count", True),
    ],
    "margin": [
        ("perpnet_margin_funding_ticks_total{outcome=committed}", True),
        ("perpnet_margin_liquidations_total", True),
        ("perpnet_margin_insurance_fund_value", False),
        ("perpnet_margin_liquidatable_accounts", False),
    ],
    "oracle": [("perpnet_oracle_ticks_total", True), ("perpnet_oracle_staleness_seconds", False)],
    "prover-0": [
        ("perpnet_prover_prove_seconds_count", True),
        ("perpnet_prover_trace_rows_count", True),
        ("perpnet_prover_trace_rows_used_sum", True),
        ("perpnet_prover_queue_depth", False),
        ("perpnet_prover_oldest_unproven_age_seconds", False),
    ],
    "bridge": [
        ("perpnet_batch_highest{stage=verified}", True),
        ("perpnet_batch_highest{stage=proven}", True),
        ("perpnet_bridge_proof_cadence_seconds_count", True),
        ("perpnet_bridge_state_update_gas_count", True),
        ("perpnet_deposit_latency_seconds_count{stage=credited}", True),
        ("perpnet_withdrawal_stage_seconds_count", True),
        ("perpnet_withdrawal_latency_seconds_count{stage=verified}", True),
        ("perpnet_withdrawal_latency_seconds_count{stage=claimed}", True),
    ],
}


def _snapshot(devnet: Devnet) -> dict[str, dict[str, float]]:
    return {process: devnet.metrics(process) for process in METRICS}


def _value(samples: dict[str, float], prefix: str) -> float | None:
    found = [v for k, v in samples.items() if k.startswith(prefix)]
    return sum(found) if found else None


def test_two_traders_trade_with_leverage_pay_funding_one_is_liquidated_the_other_claims(
    story: Devnet,
) -> None:
    before = _snapshot(story)
    alice = story.trader("alice", DEPOSIT)
    bob = story.trader("bob", DEPOSIT)

    # deposits on L1 -> the bridge (after 2 confirmations) -> Deposit txs -> credited on L2
    _deposit_both(story, alice, bob)
    assert [d["status"] for d in alice.client.deposits()] in (["credited"], ["verified"])

    # 1 BTC at 60,000 on 10,000 of collateral each: 6x leverage; alice listens to her
    # account stream before she trades, and hears of her new position
    stream = f"ws://127.0.0.1:{story.plan.gateway_port}/v1/ws/account/0x{alice.address.hex()}"
    with connect(stream) as ws:
        _open_long_short(alice, bob, ONE_BTC, PRICE)
        updates = _heard_until(ws, lambda u: bool(u["positions"]))
    # (the feed may first resend her deposit's update, committed just before she listened)
    assert {(u["type"], u["owner"]) for u in updates} == {("account", "0x" + alice.address.hex())}
    assert [(p["market_id"], int(p["size"])) for p in updates[-1]["positions"]] == [(BTC, ONE_BTC)]
    # an order signed by someone else is refused by the matcher, as a 401 at the gateway
    forged = alice.client.sign_order(BTC, True, ONE_BTC, PRICE // 2)
    forged = dataclasses.replace(forged, signature=bob.client.key.sign(forged.hash))
    with pytest.raises(GatewayError) as refused:
        alice.client.post("/v1/orders", alice.client.order_body(forged))
    assert (refused.value.status, refused.value.code) == (401, "BAD_SIGNATURE")
    assert alice.client.orders() == []
    risk = alice.client.account()["risk"]
    notional = PRICE * ONE_BTC // 10**10
    assert int(risk["value"]) * 5 <= notional and not risk["liquidatable"]

    # funding: bob bids 0.2 BTC 1 % above the index (the impact bid), so longs pay shorts
    index_before = int(alice.client.get(f"/v1/markets/{BTC}/funding")["funding_index"])
    bid = bob.client.place_order(BTC, True, ONE_BTC // 5, PRICE * 101 // 100)
    assert int(bid["resting"]) == ONE_BTC // 5

    def funded() -> bool:
        index = int(alice.client.get(f"/v1/markets/{BTC}/funding")["funding_index"])
        return index > index_before

    wait_for("a positive funding tick", funded, 30)
    bob.client.cancel_order(bid["order_hash"])
    replay = story.replay()
    ticks = [t for t in replay.txs if isinstance(t, FundingTick) and dict(t.rates).get(BTC)]
    assert ticks and all(dict(t.rates)[BTC] > 0 for t in ticks)
    a, b = replay.account_of(alice.address), replay.account_of(bob.address)
    owed_by_alice = a.collateral - replay.net_collateral(a)
    assert owed_by_alice > 0 and owed_by_alice == replay.net_collateral(b) - b.collateral

    # BTC -15 %: alice (6x long) falls below maintenance (3 %) and is liquidated
    alice_id = int(alice.client.account()["account_id"])
    story.set_prices({**START_PRICES, "BTC-USD": 51_000 * USD})
    wait_for("alice liquidated", lambda: alice.size() == 0, 60)
    closing = [
        t
        for t in story.replay().txs
        if isinstance(t, Liquidate | Deleverage) and t.account_id == alice_id
    ]
    assert closing, "no Liquidate or Deleverage of alice's account in the log"
    assert bob.size() == -ONE_BTC  # the survivor keeps his short (and its profit)

    # bob withdraws and claims on L1
    amount = 2_000 * USD
    submitted = bob.client.withdraw(amount)
    logged = story.log(int(submitted["seq"]))[-1]
    assert logged.tx_hash.hex() == submitted["tx_hash"].removeprefix("0x")
    wait_for("bob's withdrawal claimable on L1", lambda: bob.wallet.claimable() == amount, 120)
    assert bob.claim() == amount
    (record,) = bob.client.withdrawals()
    assert int(record["amount"]) == amount

    def claimed() -> bool:
        (r,) = bob.client.withdrawals()
        return bool(r["status"] == "claimed")

    wait_for("the bridge to see the claim", claimed, 30)
    stages = [s["name"] for s in bob.client.withdrawals()[0]["stages"]]
    assert stages == ["requested", "batched", "proven", "verified", "claimed"]

    # every batch (the liquidation's included) proven and verified on L1;
    # collateral conserved across L1 and L2 to the quantum
    _all_verified(story)
    _conserved(story)
    assert any(isinstance(t, Withdraw) for t in story.replay().txs)

    # the metrics a trader feels are exposed, and moved
    def stuck() -> list[str]:
        after = _snapshot(story)
        out = []
        for process, wanted in METRICS.items():
            for prefix, must_grow in wanted:
                old, new = _value(before[process], prefix), _value(after[process], prefix)
                if new is None or (must_grow and not new > (old or 0)):
                    out.append(f"{process}: {prefix} {old} -> {new}")
        return out

    wait_for("every headline metric to move", lambda: not stuck() or None, 20)
    assert story.metric("oracle", "perpnet_oracle_live_sources") == 3 * 3  # 3 markets
    assert story.metric("bridge", "perpnet_bridge_blocked") == 0
    # a trace has at least 2,048 rows, and a story's small batches need no more
    prover = story.metrics("prover-0")
    assert prover["perpnet_prover_trace_rows_bucket{le=1024.0}"] == 0
    assert prover["perpnet_prover_trace_rows_bucket{le=2048.0}"] > 0
