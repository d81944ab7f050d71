"""Completeness: valid batches from the core always prove and verify."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import pytest

from perpnet.core.batch import Batch, BatchBuilder
from perpnet.core.markets import USD
from perpnet.core.state import ExchangeState
from perpnet.stark import ProofParams
from perpnet.stark.batch_bench import build_batch, fresh_prices
from perpnet.stark.batch_proof import BatchProof, prove_batch, verify_batch
from perpnet.testkit import Desk, trader

FAST = ProofParams(num_queries=20, grinding_bits=4)


def random_batch(
    seed: int, builder: Callable[[ExchangeState], BatchBuilder] = BatchBuilder
) -> tuple[ExchangeState, Batch]:
    """A random mix on three markets: deposits (some to new accounts), trades both ways,
    transfers (some to new accounts), withdrawals, oracle and funding ticks."""
    rng = random.Random(seed)
    desk = Desk()
    keys = [trader(f"c{seed}-{i}") for i in range(6)]
    state = desk.state()
    b = builder(state)
    prices = {0: 50_000 * USD, 1: 3_000 * USD, 2: 150 * USD}
    for m, p in prices.items():
        b.add(desk.price(m, p))
    for k in keys[:4]:
        b.add(desk.deposit(k, 100_000 * USD))
    b.add(desk.cross(keys[0], keys[1], 0, True, 10**6 * 30, prices[0]))
    b.cut()
    before = copy.deepcopy(state)
    nonces = {k.address: 0 for k in keys}
    tick = desk.funding((0, rng.randint(-9000, 9000)), (1, 500))
    for tx in fresh_prices(desk, [tick], dict(prices)):
        assert isinstance(b.add(tx), tuple)
    for _ in range(14):
        roll = rng.random()
        a, c = rng.sample(keys[:4], 2)
        if roll < 0.15:
            b.add(desk.deposit(rng.choice(keys), rng.randint(1, 10**6) * 1000))
        elif roll < 0.25:
            b.add(desk.withdraw(a, rng.randint(1, 50) * USD, nonces[a.address]), authenticated=True)
            nonces[a.address] += 1
        elif roll < 0.35:
            to = rng.choice(keys).address
            if to != a.address:
                b.add(desk.transfer(a, to, 7 * USD, nonces[a.address]), authenticated=True)
                nonces[a.address] += 1
        elif roll < 0.42:
            m = rng.choice(list(prices))
            prices[m] += desk.config.markets.get(m).tick_size * rng.randint(-3, 3)
            b.add(desk.price(m, prices[m]))
        else:
            m = rng.choice(list(prices))
            step = desk.config.markets.get(m).step_size
            tx = desk.cross(a, c, m, rng.random() < 0.5, step * rng.randint(1, 40), prices[m])
            b.add(tx, authenticated=True)
    return before, b.cut()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_batches_verify(seed: int) -> None:
    before, batch = random_batch(seed)
    assert len(batch.txs) >= 12
    kinds = {type(tx).__name__ for tx in batch.txs}
    assert {"FundingTick", "Trade", "Deposit"} <= kinds
    proof = prove_batch(before, batch, FAST)
    verify_batch(batch.public_inputs, batch.diff, proof.encode(), FAST)
    assert BatchProof.decode(proof.encode()) == proof


def test_workload_batch_with_default_parameters() -> None:
    """The benchmark's workload (funding settlements, trades, deposits, transfers), on
    the smallest trace: 2,048 rows, every range-check table value reachable."""
    before, batch = build_batch(48, 12, seed=5)
    assert len(batch.txs) >= 48
    proof = prove_batch(before, batch)
    verify_batch(batch.public_inputs, batch.diff, proof)
    assert proof.extras.trace_length == 2048


def test_empty_batch_verifies() -> None:
    desk = Desk()
    state = desk.state()
    b = BatchBuilder(state)
    b.add(desk.deposit(trader("e"), USD))
    b.cut()
    before = copy.deepcopy(state)
    batch = b.cut()
    verify_batch(batch.public_inputs, batch.diff, prove_batch(before, batch, FAST), FAST)
