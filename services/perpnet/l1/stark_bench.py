"""Proven L2 batches on a stark-mode rollup: build, deploy, post, read the gas.

Shared by `perpnet bench l1` (its stark section) and tests/l1/test_rollup_stark.py.
A batch is proven from a deep copy of its pre-state, so one genesis serves any
number of deployments; a deployment records on L1 exactly the deposits its
batches consume, in order, which is what update_state checks them against.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from web3 import Web3
from web3.types import TxReceipt

from perpnet.bench.stf import workload
from perpnet.core.batch import Batch, BatchBuilder, PublicInputs
from perpnet.core.crypto import keccak
from perpnet.core.errors import CoreError
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Deposit, Tx
from perpnet.l1 import stark_verifier as sv
from perpnet.l1.anvil import DEV_KEY
from perpnet.l1.client import RollupClient, Sender
from perpnet.l1.compile import CONTRACTS, DEFAULT_BUFFERS, Buffers, constant_pattern
from perpnet.l1.deploy import Deployment, deploy
from perpnet.stark.batch_bench import fresh_prices
from perpnet.stark.batch_proof import BatchProof, prove_batch
from perpnet.stark.params import ProofParams


def _constant(contract: str, name: str) -> int:
    """A uint256 constant of a contract's source (for those it does not make public)."""
    text = (CONTRACTS / f"{contract}.vy").read_text()
    found = re.search(constant_pattern(name), text, re.MULTILINE)
    if found is None:
        raise LookupError(f"{contract}.vy has no uint256 constant {name}")
    return int(found.group(2).replace("_", ""))


MAX_PUBLIC = _constant(sv.LIBRARY, "MAX_PUBLIC")
"""stark_lib.MAX_PUBLIC: the longest batch statement the default contracts take."""
MAX_PROOF = _constant("stark_batch_verifier", "MAX_PACKED")
"""stark_batch_verifier.MAX_PACKED: the longest packed proof they take in update_state."""


@dataclass(frozen=True)
class Proven:
    """A cut batch, its proof, and the L1 deposits it consumes (in order)."""

    batch: Batch
    proof: BatchProof
    deposits: tuple[Deposit, ...]

    @property
    def pi(self) -> PublicInputs:
        return self.batch.public_inputs

    @cached_property
    def packed(self) -> bytes:
        """The rollup's `proof` argument: verify_proof(statement, STARK) calldata."""
        return sv.pack_batch_proof(self.pi, self.batch.diff, self.proof)

    @property
    def statement(self) -> bytes:
        return sv.decode_call(self.packed)[0]

    def oversize(self, buffers: Buffers = DEFAULT_BUFFERS) -> str | None:
        """Why contracts built with `buffers` cannot take this batch (a size limit), or None."""
        if len(self.statement) > buffers.statement:
            limit = f"stark_lib.MAX_PUBLIC {buffers.statement:,}"
            return f"statement {len(self.statement):,} B > {limit}"
        if len(self.packed) > buffers.packed:
            limit = f"stark_batch_verifier.MAX_PACKED {buffers.packed:,}"
            return f"packed proof {len(self.packed):,} B > {limit}"
        return None


def build(
    genesis: ExchangeState, blocks: Sequence[Sequence[Tx]], params: ProofParams
) -> list[Proven]:
    """Cut one batch per block of transactions from `genesis` (left unchanged) and prove
    each from its pre-state. Raises ValueError naming a transaction the core refuses."""
    state = copy.deepcopy(genesis)
    builder = BatchBuilder(state)
    out = []
    for txs in blocks:
        before = copy.deepcopy(state)
        for tx in txs:
            result = builder.add(tx, authenticated=True)
            if isinstance(result, CoreError):
                raise ValueError(f"the core refuses {tx!r}: {result}")
        batch = builder.cut()
        deposits = tuple(tx for tx in txs if isinstance(tx, Deposit))
        out.append(Proven(batch, prove_batch(before, batch, params), deposits))
    return out


def stark_rollup(
    w3: Web3,
    genesis: ExchangeState,
    params: ProofParams,
    deposits: Sequence[Deposit],
    buffers: Buffers = DEFAULT_BUFFERS,
) -> tuple[Deployment, RollupClient]:
    """A fresh stark-mode deployment from `genesis` (the dev key its governance and
    operator) with contracts built for `buffers`, with these deposits made on L1 in order."""
    sender = Sender(w3, key=bytes.fromhex(DEV_KEY[2:]))
    deployment = deploy(
        w3,
        sender,
        path=None,
        state=copy.deepcopy(genesis),
        verifier="stark",
        proof_params=params,
        buffers=buffers,
    )
    gov = deployment.client(w3, sender)
    total = sum(d.amount for d in deposits)
    gov.sender.transact(gov.token.functions.mint(sender.address, total))
    gov.approve(total)
    calls = [
        gov.rollup.functions.deposit(Web3.to_checksum_address(d.owner), d.subaccount, d.amount)
        for d in deposits
    ]
    receipts, error = gov.sender.transact_all(calls)
    if error is not None or len(receipts) != len(deposits):
        raise RuntimeError(f"L1 deposits failed: {error}")
    return deployment, gov


def workload_blocks(
    size: int, accounts: int, seed: int = 1
) -> tuple[ExchangeState, list[Tx], list[Tx]]:
    """The stf workload as (genesis, warm-up block, measured block of `size` txs): the warm-up
    funds `accounts` traders and opens positions, so the measured batch settles funding."""
    desk, setup, work = workload(2, size, accounts, seed)
    prices: dict[int, int] = {}
    warm = fresh_prices(desk, [*setup, *work[0]], prices)
    measured = fresh_prices(desk, work[1], prices)
    return ExchangeState(desk.config), warm, measured


def _gas(w3: Web3, receipt: TxReceipt) -> sv.Gas:
    """A mined transaction's gas, with its calldata's share."""
    data = bytes(w3.eth.get_transaction(receipt["transactionHash"])["input"])
    return sv.Gas.of(int(receipt["gasUsed"]), data)


def measure(
    w3: Web3, size: int, accounts: int, params: ProofParams, seed: int = 1
) -> dict[str, object]:
    """update_state's gas for the measured batch of `size` stf transactions (after its
    warm-up batch, posted first), with its sizes, on the default contracts if they take
    both batches and otherwise on contracts built for them (`buffers`; every update pays
    memory for its deployment's buffers); a batch no deployment takes is reported with its
    sizes and why, and not posted.

    The split runs the same bytes through the STARK verifier alone and through the
    batch verifier (adapter) alone, as transactions: execution gas (total less the
    21,000 base and calldata) of each, less that of the layer below; absent when the
    EIP-7623 calldata floor sets a total."""
    genesis, warm, measured = workload_blocks(size, accounts, seed)
    warm_p, p = build(genesis, [warm, measured], params)
    row: dict[str, object] = {
        "batch_size": size,
        "transactions": len(p.batch.txs),
        "accounts_touched": len(p.batch.diff.accounts),
        "statement_bytes": len(p.statement),
        "stark_proof_bytes": len(p.proof.stark),
        "packed_proof_bytes": len(p.packed),
    }
    try:  # the default contracts if they take both batches, else ones built for them
        buffers = Buffers.fitting(
            max(len(warm_p.statement), len(p.statement)), max(len(warm_p.packed), len(p.packed))
        )
    except ValueError as exc:
        return {**row, "fits": False, "why": f"no deployment takes it: {exc}"}
    row["buffers"] = {"statement": buffers.statement, "packed": buffers.packed}
    row["default_buffers"] = buffers == DEFAULT_BUFFERS
    deployment, gov = stark_rollup(w3, genesis, params, warm_p.deposits + p.deposits, buffers)
    gov.update_state(warm_p.pi, warm_p.packed)
    update = _gas(w3, gov.update_state(p.pi, p.packed))
    if gov.state_root() != p.batch.diff.new_root:
        raise RuntimeError("update_state did not move the root to the batch's")
    contracts = {
        name: w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)
        for name, (address, abi) in deployment.contracts().items()
    }
    stark_call = contracts["stark_verifier"].functions.verify_proof(*sv.decode_call(p.packed))
    adapter_call = contracts["verifier"].functions.verify(keccak(p.pi.encode()), p.packed)
    layers = [_gas(w3, gov.sender.transact(call)).execution for call in (stark_call, adapter_call)]
    row |= {
        "fits": True,
        "update_state_gas": update.total,
        "gas_per_transaction": update.total // len(p.batch.txs),
        "calldata_gas": update.calldata,
    }
    stark, adapter, rollup = (*layers, update.execution)
    if stark is not None and adapter is not None and rollup is not None:
        row["execution_gas"] = {
            "stark_verifier": stark,
            "batch_verifier": adapter - stark,
            "rollup": rollup - adapter,
        }
    return row
