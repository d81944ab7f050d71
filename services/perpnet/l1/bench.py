"""`perpnet bench l1`: gas of every rollup operation on a real anvil, with real L2 batches.

A state update's gas grows with what it hands over (deposits consumed,
withdrawals credited, each one storage write and a log) and with the proof
bytes carried as calldata, so updates are measured by batch size (n deposits
and n withdrawals) with no proof and with a proof-sized payload, on a rollup whose
verifier is the fact registry (the proof is not checked on chain).

The stark section posts real proven batches of the stf workload to a rollup that
verifies them on chain (deploy(verifier="stark"), default proof parameters): per batch
size, update_state's gas, its calldata share, the statement and STARK proof bytes and,
where the calldata floor does not set the total, the execution split between the STARK
verifier, the batch verifier in front of it and the rollup. Each size is proven once
(gas is deterministic). A batch the default contracts cannot take (over 1,024
transactions) is measured on contracts built for it (compile.Buffers, reported as
`buffers`), on an anvil whose block gas limit (BENCH_GAS_LIMIT) is no bound: the bench
measures gas, and says where it passes the limit the devnet's L1 has.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

from web3 import Web3

from perpnet.bench.report import machine, median
from perpnet.core.batch import Batch, BatchBuilder
from perpnet.core.crypto import PrivateKey
from perpnet.core.errors import CoreError
from perpnet.core.markets import USD
from perpnet.core.txs import Deposit, Tx
from perpnet.l1.anvil import BLOCK_GAS_LIMIT, DEV_KEY, Anvil
from perpnet.l1.client import RollupClient, Sender
from perpnet.l1.deploy import deploy
from perpnet.stark.params import DEFAULT_PARAMS, ProofParams, security_bits
from perpnet.testkit import Desk, trader

DEFAULT_BATCH_SIZES = (1, 10, 100)
DEFAULT_PROOF_BYTES = 100_000  # about a Winterfell proof at 100 bits
DEFAULT_STARK_SIZES = (64, 256, 512, 1024, 2048, 4096)
BENCH_GAS_LIMIT = 1_000_000_000
STARK_ACCOUNTS = 200


class _Bench:
    """One deployment and the L2 state whose batches it posts."""

    def __init__(self, anvil: Anvil) -> None:
        self.anvil = anvil
        self.w3 = Web3(Web3.HTTPProvider(anvil.url))
        self.sender = Sender(self.w3, key=bytes.fromhex(DEV_KEY[2:]))
        self.desk = Desk()
        self.state = self.desk.state()
        deployment = deploy(  # placeholder proofs: the fact registry
            self.w3, self.sender, path=None, grace_period=1, state=self.state, verifier="facts"
        )
        self.client: RollupClient = deployment.client(self.w3, self.sender)
        self.builder = BatchBuilder(self.state)
        self.client.faucet(10**12)

    def user(self, key: PrivateKey) -> RollupClient:
        sender = Sender(self.w3, key=key.secret)
        self.anvil.set_balance(sender.address, 10**20)
        return self.client.as_sender(sender)

    def apply(self, *txs: Tx) -> None:
        for tx in txs:
            result = self.builder.add(tx)
            if isinstance(result, CoreError):
                raise result

    def deposit(self, owner: bytes, amount: int) -> tuple[Deposit, int]:
        """An L1 deposit (paid by the bench account) and its L2 Deposit; returns gas too."""
        deposit_id, receipt = self.client.deposit(owner, 0, amount)
        return Deposit(self.desk.tick(), deposit_id, owner, 0, amount), int(receipt["gasUsed"])

    def post(self, batch: Batch, proof: bytes) -> int:
        self.client.register_fact(batch.public_inputs, proof)
        return int(self.client.update_state(batch.public_inputs, proof)["gasUsed"])


def _update_gas(bench: _Bench, size: int, proof: bytes, tag: str) -> tuple[int, list[int]]:
    """Gas of one update with `size` deposits and `size` withdrawals; and the deposits' gas."""
    keys = [trader(f"bench-{tag}-{i}") for i in range(size)]
    deposit_gas: list[int] = []
    for key in keys:
        tx, gas = bench.deposit(key.address, 100 * USD)
        deposit_gas.append(gas)
        bench.apply(tx)
    bench.apply(*(bench.desk.withdraw(key, 10 * USD, 0) for key in keys))
    return bench.post(bench.builder.cut(), proof), deposit_gas


def _stark(w3: Web3, sizes: Sequence[int], accounts: int, params: ProofParams) -> dict[str, object]:
    from perpnet.l1 import stark_bench  # the STARK stack: only when measured

    return {
        "parameters": {
            "workload": "perpnet.bench.stf (a warm-up batch, then the measured one)",
            "accounts": accounts,
            "proof_params": dataclasses.asdict(params),
            "security_bits": security_bits(params),
            "max_statement_bytes": stark_bench.MAX_PUBLIC,
            "max_packed_proof_bytes": stark_bench.MAX_PROOF,
            "devnet_block_gas_limit": BLOCK_GAS_LIMIT,
            "repeats": 1,
        },
        "state_update": [stark_bench.measure(w3, size, accounts, params) for size in sizes],
    }


def run(
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    proof_bytes: int = DEFAULT_PROOF_BYTES,
    stark_sizes: Sequence[int] = DEFAULT_STARK_SIZES,
    stark_accounts: int = STARK_ACCOUNTS,
    proof_params: ProofParams = DEFAULT_PARAMS,
) -> dict[str, object]:
    """Measure on a private anvil; every figure is gas used by one transaction.
    `stark_sizes` empty skips the stark section (which proves batches: the slow part);
    `proof_params` trade prove time (blowup) against verification gas (queries)."""
    started = time.perf_counter()
    with Anvil(gas_limit=BENCH_GAS_LIMIT) as anvil:
        bench = _Bench(anvil)
        proof = os.urandom(proof_bytes)
        updates: list[dict[str, int]] = []
        deposits: list[int] = []
        for size in batch_sizes:
            for label, payload in (("no_proof", b""), ("with_proof", proof)):
                gas, deposit_gas = _update_gas(bench, size, payload, f"{size}-{label}")
                deposits.extend(deposit_gas)
                updates.append({"batch_size": size, "proof_bytes": len(payload), "gas": gas})
        claim_gas = [
            int(bench.user(trader(f"bench-{batch_sizes[0]}-no_proof-{i}")).claim()[1]["gasUsed"])
            for i in range(batch_sizes[0])
        ]

        # A trader with positions requests a forced withdrawal that is never served.
        alice, bob = trader("bench-alice"), trader("bench-bob")
        desk = bench.desk
        for key in (alice, bob):
            bench.apply(bench.deposit(key.address, 5_000 * USD)[0])
        bench.apply(
            desk.price(0, 30_000 * USD), desk.cross(alice, bob, 0, True, 10**8, 30_000 * USD)
        )
        bench.post(bench.builder.cut(), b"")
        alice_l1 = bench.user(alice)
        request_id, forced_receipt = alice_l1.forced_withdrawal_request(0, USD)
        anvil.increase_time(2)
        freeze_receipt = bench.client.freeze(request_id)
        account_id = bench.state.account_id(alice.address, 0)
        assert account_id is not None
        leaf, siblings = bench.state.account_proof(account_id)
        _, escape_receipt = alice_l1.escape(account_id, leaf, siblings)
        stark = _stark(bench.w3, stark_sizes, stark_accounts, proof_params) if stark_sizes else None
    return {
        "benchmark": "l1",
        "unit": "gas",
        "state_update": updates,
        "stark": stark,
        "deposit": int(median(deposits)),
        "claim": int(median(claim_gas)),
        "forced_request": int(forced_receipt["gasUsed"]),
        "freeze": int(freeze_receipt["gasUsed"]),
        "escape": int(escape_receipt["gasUsed"]),
        "escape_positions": len(bench.state.account(account_id).positions),
        "seconds": round(time.perf_counter() - started, 2),
        "machine": machine(),
    }
