"""One anvil for the whole L1 session, a fresh deployment per test, and an L2 beside it.

anvil must be installed (scripts/test.sh does it); if it is not, these tests
fail with the install command rather than skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from web3 import Web3

from perpnet.core.batch import Batch, BatchBuilder
from perpnet.core.crypto import PrivateKey
from perpnet.core.errors import CoreError
from perpnet.core.markets import USD
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Tx
from perpnet.l1.anvil import DEV_KEY, Anvil
from perpnet.l1.client import RollupClient, Sender
from perpnet.l1.deploy import Deployment, deploy
from perpnet.testkit import Desk, trader

GRACE_S = 60
RECLAIM_S = 300


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture(scope="session")
def w3(anvil: Anvil) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.url))


@dataclass
class World:
    """L1 contracts, an L2 state and its batch builder, and the people using both."""

    anvil: Anvil
    w3: Web3
    deployment: Deployment
    gov: RollupClient
    desk: Desk
    state: ExchangeState
    builder: BatchBuilder
    users: dict[str, RollupClient] = field(default_factory=dict)

    def user(self, name: str) -> RollupClient:
        """An L1 client signing with the trader's own key (the L2 owner address)."""
        client = self.users.get(name)
        if client is None:
            key = trader(name)
            sender = Sender(self.w3, key=key.secret)
            self.anvil.set_balance(sender.address, 10**20)
            client = self.users[name] = self.gov.as_sender(sender)
        return client

    def fund_and_deposit(self, name: str, amount: int, subaccount: int = 0) -> int:
        client = self.user(name)
        client.faucet(amount)
        deposit_id, _ = client.deposit(trader(name).address, subaccount, amount)
        return deposit_id

    def apply(self, *txs: Tx) -> None:
        for tx in txs:
            result = self.builder.add(tx)
            assert not isinstance(result, CoreError), result

    def l2_deposit(self, deposit_id: int) -> Tx:
        """The L2 Deposit transaction for an L1 deposit, as the bridge builds it."""
        from perpnet.core.txs import Deposit

        record = self.gov.pending_deposit(deposit_id)
        return Deposit(self.desk.tick(), deposit_id, record.owner, record.subaccount, record.amount)

    def post(self, batch: Batch, proof: bytes | None = None) -> None:
        """Register the proof's fact (as the off-chain verifier would) and post the batch."""
        proof = proof if proof is not None else b"stark-proof-%d" % batch.batch_id
        self.gov.register_fact(batch.public_inputs, proof)
        self.gov.update_state(batch.public_inputs, proof)


@pytest.fixture
def world(anvil: Anvil, w3: Web3) -> World:
    sender = Sender(w3, key=bytes.fromhex(DEV_KEY[2:]))
    desk = Desk()
    state = desk.state()
    deployment = deploy(  # fact registry: these tests post placeholder proofs
        w3,
        sender,
        path=None,
        grace_period=GRACE_S,
        deposit_reclaim_delay=RECLAIM_S,
        state=state,
        verifier="facts",
    )
    return World(
        anvil, w3, deployment, deployment.client(w3, sender), desk, state, BatchBuilder(state)
    )


def key(name: str) -> PrivateKey:
    return trader(name)


__all__ = ["GRACE_S", "RECLAIM_S", "USD", "World", "key"]
