"""The sequencer's count of a batch statement's size against the statements the prover makes.

A batch whose statement passes the L1 verifier's buffer can never be posted, so
the sequencer cuts by `statement_size`: it must be the real size, and one
transaction must never grow it by more than `statement_growth_bound`.
"""

from __future__ import annotations

import copy

import pytest
from test_batch_completeness import random_batch
from test_batch_liquidation import liquidations_and_forced_withdrawals, run, setup

from perpnet.core.batch import (
    Batch,
    BatchBuilder,
    statement_growth_bound,
    statement_size,
)
from perpnet.core.errors import CoreError
from perpnet.core.markets import USD
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Tx
from perpnet.l1.stark_bench import MAX_PUBLIC
from perpnet.sequencer.settings import SequencerSettings
from perpnet.stark.batch_proof import prepare_batch
from perpnet.stark.batch_statement import statement_bytes
from perpnet.testkit import Desk, trader


class Measured(BatchBuilder):
    """A builder that checks the size's growth after every transaction and keeps the
    size each batch was cut at."""

    def __init__(self, state: ExchangeState, next_batch_id: int = 0) -> None:
        super().__init__(state, next_batch_id)
        self.growth = statement_growth_bound(len(state.markets.markets), state.config.tree_depth)
        self.size = statement_size(self.footprint())
        self.cut_at: list[int] = []

    def add(self, tx: Tx, *, authenticated: bool = False) -> object:  # type: ignore[override]
        result = super().add(tx, authenticated=authenticated)
        now = statement_size(self.footprint())
        assert now - self.size <= self.growth, type(tx).__name__  # (closing positions shrinks it)
        self.size = now
        return result

    def cut(self) -> Batch:
        self.cut_at.append(self.size)
        batch = super().cut()
        self.size = statement_size(self.footprint())
        return batch


def assert_size_is_exact(before: ExchangeState, batch: Batch, counted: int) -> int:
    """The size the builder counted is the statement's length; returns it."""
    extras = prepare_batch(before, batch).extras
    actual = len(statement_bytes(batch.public_inputs, batch.diff, extras))
    assert counted == actual
    return actual


def measured() -> tuple[list[Measured], type[Measured]]:
    made: list[Measured] = []

    class Recorded(Measured):
        def __init__(self, state: ExchangeState, next_batch_id: int = 0) -> None:
            super().__init__(state, next_batch_id)
            made.append(self)

    return made, Recorded


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_batches(seed: int) -> None:
    made, builder = measured()
    before, batch = random_batch(seed, builder)
    assert_size_is_exact(before, batch, made[0].cut_at[-1])


def test_liquidations_forced_withdrawals_and_the_fund() -> None:
    made, builder = measured()
    desk, state, b = setup(builder=builder)
    before = copy.deepcopy(state)
    batch = run(b, liquidations_and_forced_withdrawals(desk))
    assert_size_is_exact(before, batch, made[0].cut_at[-1])


def test_many_new_accounts_and_an_empty_batch() -> None:
    """Fresh accounts far apart in the tree need long proofs: the case that overflows."""
    desk = Desk()
    state = desk.state()
    b = Measured(state)
    before = copy.deepcopy(state)
    b.add(desk.price(0, 50_000 * USD))
    keys = [trader(f"size-{i}") for i in range(120)]
    for key in keys:
        assert not isinstance(b.add(desk.deposit(key, 1_000 * USD)), CoreError)
    for maker, taker in zip(keys[::2], keys[1::2], strict=True):
        tx = desk.cross(maker, taker, 0, True, 10**6, 50_000 * USD)
        assert not isinstance(b.add(tx, authenticated=True), CoreError)
    batch = b.cut()
    actual = assert_size_is_exact(before, batch, b.cut_at[-1])
    assert actual > 120 * 32 * 4  # a few siblings per account at least
    before = copy.deepcopy(state)
    assert_size_is_exact(before, b.cut(), b.cut_at[-1])


def test_the_sequencer_default_is_the_verifiers_buffer() -> None:
    settings = SequencerSettings.from_env("sequencer", {})
    assert settings.batch_max_statement_bytes == MAX_PUBLIC
