"""The bridge against a real anvil with the rollup deployed, a real sequencer and prover worker.

anvil mines on demand here, so confirmations are counted exactly: a deposit
stays unseen by L2 with one confirmation and is credited once a second block
lands. Its batch and a withdrawal's are proven, posted in order and verified
on L1; the withdrawal becomes claimable, is claimed, and every stage is
recorded. A forced request becomes a ForcedWithdrawal on L2, is proven and
posted, and its served amount becomes claimable on L1.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from web3 import Web3

from perpnet.bridge import metrics as bridge_metrics
from perpnet.bridge.service import BridgeService, BridgeSettings
from perpnet.core.encoding import encode_tx
from perpnet.core.markets import USD
from perpnet.core.state import ExchangeState
from perpnet.l1.anvil import DEV_KEY, Anvil, rpc
from perpnet.l1.client import RollupClient, Sender
from perpnet.l1.deploy import deploy
from perpnet.proto.v1 import sequencer_pb2 as pb
from perpnet.prover.service import ProverService, ProverSettings
from perpnet.runtime.clock import now_ms
from perpnet.runtime.db import make_engine
from perpnet.runtime.grpc_server import Service, serve
from perpnet.runtime.models import (
    DepositRecord,
    DepositStatus,
    WithdrawalRecord,
    WithdrawalStatus,
)
from perpnet.runtime.sequencer_client import Counters
from perpnet.sequencer.settings import SequencerSettings
from perpnet.testkit import Desk, trader
from services.test_prover import until
from services.test_sequencer import running, sequencer_env

ALICE = trader("alice")


@pytest.fixture(scope="module")
def anvil() -> Any:
    with Anvil() as node:
        yield node


@contextlib.asynccontextmanager
async def serving(service: Service[Any]) -> AsyncIterator[None]:
    task = asyncio.create_task(serve(service, handle_signals=False))
    try:
        await until(lambda: asyncio.sleep(0, True if service.recovered or task.done() else None))
        if task.done():
            task.result()
        yield
    finally:
        service.request_stop()
        await task


def test_deposit_post_withdraw_claim_and_forced_request(
    tmp_path: Path, redis_url: str, anvil: Anvil
) -> None:
    asyncio.run(_scenario(tmp_path, redis_url, anvil))


async def _scenario(tmp_path: Path, redis_url: str, anvil: Anvil) -> None:
    env = sequencer_env(tmp_path / "perpnet.db", redis_url, batch_interval_ms=200)
    config = SequencerSettings.from_env("sequencer", env).exchange_config()
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    operator = Sender(w3, key=bytes.fromhex(DEV_KEY[2:]))
    deployment = deploy(w3, operator, path=tmp_path / "l1.json", state=ExchangeState(config))
    alice = deployment.client(w3, Sender(w3, key=ALICE.secret))
    anvil.set_balance(alice.sender.address, 10**20)
    alice.faucet(100 * USD)
    alice.approve(2**256 - 1)

    async with running(env) as (sequencer, stub):
        peers = {
            **env,
            "PERPNET_SEQUENCER_ADDR": f"127.0.0.1:{sequencer.grpc_port}",
            "PERPNET_L1_RPC_URL": anvil.url,
            "PERPNET_L1_DEPLOYMENT": str(tmp_path / "l1.json"),
            "PERPNET_POLL_INTERVAL_S": "0.1",
            "PERPNET_PROVER_POLL_MS": "100",
        }
        prover = ProverService(ProverSettings.from_env("prover", peers))
        bridge = BridgeService(BridgeSettings.from_env("bridge", peers))
        engine = make_engine(f"sqlite:///{tmp_path / 'perpnet.db'}")
        try:
            async with serving(prover), serving(bridge):
                await _lifecycle(stub, alice, engine, anvil)
        finally:
            engine.dispose()


def _get(engine: Any, kind: type[Any], key: int) -> Any:
    with Session(engine) as session:
        return session.get(kind, key)


async def _counters(stub: Any) -> Counters:
    return Counters.parse((await stub.GetState(pb.GetStateRequest())).globals)


async def _lifecycle(stub: Any, alice: RollupClient, engine: Any, anvil: Anvil) -> None:
    deposit_id, receipt = alice.deposit(ALICE.address, 0, 100 * USD)
    await asyncio.sleep(1.0)  # ten bridge polls at one confirmation
    seen = _get(engine, DepositRecord, deposit_id)
    assert seen is not None and seen.status == DepositStatus.SEEN
    assert seen.l1_block == receipt["blockNumber"]
    assert (await _counters(stub)).next_deposit_id == 0
    rpc(anvil.url, "evm_mine")  # the second confirmation

    async def credited() -> DepositRecord | None:
        record = _get(engine, DepositRecord, deposit_id)
        return record if record.status == DepositStatus.CREDITED else None

    record = await until(credited, 10)
    assert (await _counters(stub)).next_deposit_id == 1 and record.seq is not None

    desk = Desk(now_ms=now_ms() + 1)
    withdraw = desk.withdraw(ALICE, 10 * USD, 0)
    reply = await stub.SubmitTx(pb.SubmitTxRequest(tx=encode_tx(withdraw)))

    async def claimable() -> int | None:
        amount = alice.claimable(ALICE.address)
        return amount or None

    assert await until(claimable, 60) == 10 * USD
    assert alice.next_batch_id() == reply.batch_id + 1  # both batches, in order

    async def withdrawal(status: WithdrawalStatus) -> WithdrawalRecord | None:
        with Session(engine) as session:
            found = session.query(WithdrawalRecord).filter_by(seq=reply.seq).one_or_none()
        return found if found is not None and found.status == status else None

    verified = await until(lambda: withdrawal(WithdrawalStatus.VERIFIED), 10)
    assert verified.amount == 10 * USD and verified.recipient == ALICE.address
    assert verified.batch_id == reply.batch_id and verified.account >= 2
    stamps = [verified.requested_ms, verified.batched_ms, verified.proven_ms, verified.verified_ms]
    assert all(stamps) and stamps == sorted(stamps)
    final = _get(engine, DepositRecord, deposit_id)
    assert final.status == DepositStatus.VERIFIED and final.batch_id is not None

    alice.claim()
    rpc(anvil.url, "evm_mine")
    claimed = await until(lambda: withdrawal(WithdrawalStatus.CLAIMED), 10)
    assert claimed.claimed_ms >= claimed.verified_ms
    assert alice.balance(ALICE.address) == 10 * USD

    request_id, _ = alice.forced_withdrawal_request(0, 1 * USD)
    rpc(anvil.url, "evm_mine")

    async def forced_on_l2() -> bool | None:
        return True if (await _counters(stub)).next_forced_id == request_id + 1 else None

    await until(forced_on_l2, 10)
    # its batch is proven and posted like any other: the served amount becomes claimable
    assert await until(claimable, 60) == 1 * USD
    assert not bridge_metrics.BLOCKED._value.get()
