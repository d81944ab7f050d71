"""The forced-withdrawal path end to end (StarkEx's escape hatch) on the running devnet.

The operator is told to censor one user: the bridge's chaos knob
PERPNET_BRIDGE_IGNORE_FORCED_FROM makes it never submit that user's forced request to the
sequencer. The user asks on L1, the grace period (5 s on this devnet) passes unserved, anyone
freezes the rollup, and then every account, the protocol's included, escapes with a Merkle
proof of its leaf in the last verified state and is paid exactly its value there: collateral
less pending funding plus positions marked at the last verified prices. Every unit the rollup
held goes back out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.harness import BTC, ONE_BTC, START_PRICES, Devnet, Trader, running_devnet, wait_for
from perpnet.core.accounts import FEE_POOL_ID, INSURANCE_FUND_ID
from perpnet.core.crypto import PrivateKey
from perpnet.core.markets import USD
from perpnet.core.txs import ForcedWithdrawal
from perpnet.l1.client import L1RevertError

pytestmark = pytest.mark.e2e

GRACE_S = 5
PRICE = START_PRICES["BTC-USD"]
DEPOSIT = 10_000 * USD


def _censored(directory: Path) -> PrivateKey:
    return PrivateKey.from_seed(f"{directory}/xavier".encode())  # Devnet.trader's derivation


def test_an_ignored_forced_request_freezes_the_rollup_and_every_account_escapes(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "forced"
    xavier_address = "0x" + _censored(directory).address.hex()
    knobs = {"PERPNET_BRIDGE_IGNORE_FORCED_FROM": xavier_address}
    with running_devnet(directory, grace_period_s=GRACE_S, extra_env=knobs) as devnet:
        _drill(devnet)


def _drill(devnet: Devnet) -> None:
    xavier = devnet.trader("xavier", DEPOSIT)
    yvonne = devnet.trader("yvonne", DEPOSIT)
    zoe = devnet.trader("zoe", DEPOSIT)
    assert "0x" + xavier.address.hex() in devnet.plan.environment().values()
    for t in (xavier, yvonne, zoe):
        t.deposit(DEPOSIT)
    for t in (xavier, yvonne, zoe):
        wait_for(f"{t.name} credited", lambda t=t: t.collateral() == DEPOSIT, 60)
    # open positions, so that escaping pays marked values and not just collateral
    rest = yvonne.client.place_order(BTC, False, ONE_BTC // 2, PRICE)
    take = xavier.client.place_order(BTC, True, ONE_BTC // 2, PRICE)
    assert take["fills"] and take["fills"][0]["maker_hash"] == rest["order_hash"]
    cut = devnet.state().next_batch_id
    wait_for("the trade verified on L1", lambda: devnet.verified_batch() >= cut, 90)

    # xavier asks L1 for a forced withdrawal; the operator ignores it
    request_id = xavier.wallet.forced_withdrawal(1_000 * USD)
    deadline = devnet.rollup.forced_request(request_id).deadline
    with pytest.raises(L1RevertError, match="grace period not over"):
        yvonne.wallet.freeze(request_id)
    wait_for("the bridge to count it pending", lambda: _forced_pending(devnet) == 1, 30)

    def past_deadline() -> bool:
        return int(devnet.w3.eth.get_block("latest")["timestamp"]) > deadline

    wait_for("the grace period to pass", past_deadline, GRACE_S + 30)
    assert devnet.rollup.rollup.functions.next_unserved_forced().call() == request_id
    assert not [t for t in devnet.replay().txs if isinstance(t, ForcedWithdrawal)]

    # anyone may freeze now; state updates stop
    yvonne.wallet.freeze(request_id)
    assert xavier.wallet.frozen()
    verified = devnet.verified_batch()
    time.sleep(3)  # the bridge keeps trying to post; L1 refuses it
    assert devnet.verified_batch() == verified

    # every account's value in the last verified state, from a replay of the log
    replay = devnet.replay_batch(verified)
    assert replay.state.account_tree.root() == devnet.rollup.accounts_root()
    values = {a.account_id: max(0, replay.value(a)) for a in replay.accounts()}
    held = devnet.rollup_balance()
    assert held == replay.total_net_collateral()  # every deposit consumed, nothing claimable

    paid = 0
    for t in (xavier, yvonne, zoe):
        paid += _escape(replay.state.account_proof, t, values)
    for account_id in (INSURANCE_FUND_ID, FEE_POOL_ID):  # the protocol's pay governance
        leaf, siblings = replay.state.account_proof(account_id)
        amount, _ = devnet.rollup.escape(account_id, leaf, siblings)
        assert amount == values[account_id]
        paid += amount
    assert set(values) == {INSURANCE_FUND_ID, FEE_POOL_ID} | {
        replay.account_of(t.address).account_id for t in (xavier, yvonne, zoe)
    }
    assert values[FEE_POOL_ID] > 0  # the trade's fees

    # every unit the rollup held went back out (marks are exact here: nothing to round)
    assert paid == sum(values.values()) == held
    assert devnet.rollup_balance() == 0
    with pytest.raises(L1RevertError, match="already escaped"):
        xavier.wallet.escape(xavier.client.proof())


def _escape(
    prove: Callable[[int], tuple[bytes, list[bytes]]], trader: Trader, values: dict[int, int]
) -> int:
    """Escape through the SDK (the gateway's proof), checked against the replayed leaf."""
    proof = trader.client.proof()
    account_id = int(proof["account_id"])
    leaf, siblings = prove(account_id)
    assert bytes.fromhex(proof["leaf"][2:]) == leaf  # the leaf of the last verified state
    assert [bytes.fromhex(s[2:]) for s in proof["siblings"]] == siblings
    before = trader.wallet.balance()
    amount = trader.wallet.escape(proof)
    assert amount == values[account_id] > 0
    assert trader.wallet.balance() == before + amount
    return amount


def _forced_pending(devnet: Devnet) -> float:
    return devnet.metric("bridge", "perpnet_bridge_forced_pending")
