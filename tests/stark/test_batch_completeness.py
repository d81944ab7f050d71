"""Completeness: valid batches from the core always prove and verify."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import numpy as np
import pytest

from perpnet.core.batch import Batch, BatchBuilder
from perpnet.core.markets import USD
from perpnet.core.state import ExchangeState
from perpnet.stark import ProofParams, StarkProverError
from perpnet.stark.batch_bench import build_batch, fresh_prices
from perpnet.stark.batch_proof import BatchProof, prepare_batch, prove_batch, verify_batch
from perpnet.stark.batch_trace import set_multiplicities
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
    the smallest trace: 2,048 rows."""
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


def test_the_table_counts_each_value_on_its_row_in_its_half() -> None:
    """Value v counts on row v of `mult` below 1,024 and on row v - 1,024 of `mult2`
    from there to 2,047; the last row's lookups are not counted (the running sum skips
    that row) and 2,048 is out of range."""
    before, batch = build_batch(8, 4, seed=1)
    prep = prepare_batch(before, batch)
    cols, trace = prep.air.cols, prep.witness.trace
    n = trace.shape[1]
    lookups = np.zeros((1, n), dtype=np.uint64)
    lookups[0, :4] = [1023, 1024, 2047, 5]
    lookups[0, n - 1] = 7
    set_multiplicities(cols, trace, lookups)
    mult, mult2 = trace[cols["mult"]], trace[cols["mult2"]]
    assert (int(mult[0]), int(mult[5]), int(mult[7]), int(mult[1023])) == (n - 5, 1, 0, 1)
    assert (int(mult2[0]), int(mult2[1023])) == (1, 1)
    assert int(mult.sum() + mult2.sum()) == n - 1 and not mult[1024:].any()
    lookups[0, 4] = 2048
    with pytest.raises(StarkProverError, match="out of range at row 4"):
        set_multiplicities(cols, trace, lookups)
