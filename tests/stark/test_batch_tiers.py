"""Margin tiers in the batch AIR: positions past later tiers are proven with one excess
row per tier reached, and a batch that skips a tier's margin is rejected."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from test_batch_soundness import FAST, _prep_from, cheat, reject

from perpnet.core.batch import Batch, BatchBuilder
from perpnet.core.markets import PPM, USD, Market
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Tx
from perpnet.stark import StarkProverError, batch_trace
from perpnet.stark.batch_layout import LIMB, OFF_SMALL, TIER_OPEN, MarketConstants
from perpnet.stark.batch_proof import prepare_batch, prove_batch, verify_batch
from perpnet.stark.batch_trace import build_witness
from perpnet.stark.field import P
from perpnet.testkit import Desk, trader

A, B, C = trader("ta"), trader("tb"), trader("tc")
BTC, ETH = 0, 1
ONE_BTC, ONE_ETH = 10**10, 10**9
P50K, P3K = 50_000 * USD, 3_000 * USD


def batch_of(deposit: int, txs: Callable[[Desk], list[Tx]]) -> tuple[ExchangeState, Batch]:
    desk = Desk()
    state = desk.state()
    b = BatchBuilder(state)
    b.add(desk.price(BTC, P50K))
    b.add(desk.price(ETH, P3K))
    for k in (A, B, C):
        b.add(desk.deposit(k, deposit))
    b.cut()
    before = copy.deepcopy(state)
    for tx in txs(desk):
        result = b.add(tx, authenticated=True)
        assert not isinstance(result, Exception), result
    return before, b.cut()


def test_positions_past_every_tier_are_proven() -> None:
    """80 BTC (past 15 and 75) and 400 ETH (past 250), long and short, then a reducing
    trade (maintenance, traded market first) and a withdrawal (initial) on top."""

    def txs(desk: Desk) -> list[Tx]:
        return [
            desk.cross(B, A, BTC, True, 80 * ONE_BTC, P50K),
            desk.cross(A, B, ETH, False, 400 * ONE_ETH, P3K),
            desk.cross(C, A, BTC, False, 10 * ONE_BTC, P50K),
            desk.withdraw(A, 1_000 * USD, 0),
        ]

    before, batch = batch_of(2_000_000 * USD, txs)
    prep = prepare_batch(before, batch)
    cols = prep.air.cols
    trace = prep.witness.trace
    assert int(trace[cols["t2"]].sum()) > 0 and int(trace[cols["t3"]].sum()) > 0
    proof = prove_batch(before, batch, FAST).encode()
    verify_batch(batch.public_inputs, batch.diff, proof, FAST)


def _first_tier_only(self: Market, size: int, price: int, initial: bool) -> int:
    tier = self.tiers[0]
    ppm = tier.initial_ppm if initial else tier.maintenance_ppm
    return -(-self.quote(abs(size), price) * ppm // PPM)


def _without_tiers(markets: object) -> tuple[MarketConstants, ...]:
    """The cheating witness builder's constants: every market one open tier."""
    real = _constants(markets)
    return tuple(dataclasses.replace(c, widths=(TIER_OPEN,) * 3) for c in real)


_constants = batch_trace.market_constants


@pytest.mark.parametrize("claimed_width", ["open", "true"])
def test_a_position_past_a_tier_cannot_skip_its_excess_margin(
    monkeypatch: pytest.MonkeyPatch, claimed_width: str
) -> None:
    """A sequencer that charges only the first tier's fraction lets A buy 80 BTC
    (4M notional) on 230k: 5 % is 200k, the tiered requirement 293,750. The honest
    prover refuses; a prover that leaves the excess rows out is rejected, whether its
    rows claim an open tier or the true width with a slack that wraps modulo p."""

    def txs(desk: Desk) -> list[Tx]:
        return [desk.cross(B, A, BTC, True, 80 * ONE_BTC, P50K)]

    deposit = 230_000 * USD
    with pytest.raises(AssertionError):
        batch_of(deposit, txs)  # the core itself refuses the trade
    with patched_market(monkeypatch):
        before, batch = batch_of(deposit, txs)
    with pytest.raises(StarkProverError):
        prepare_batch(before, batch)
    with patched_market(monkeypatch):
        monkeypatch.setattr(batch_trace, "market_constants", _without_tiers)
        witness = build_witness(copy.deepcopy(before), batch.txs)
    prep = _prep_from(before, batch, witness)
    if claimed_width == "true":
        cols, trace = prep.air.cols, prep.witness.trace
        rows = np.nonzero(trace[cols["k_mg"]] * trace[cols["e0"]])[0]
        assert rows.size
        for r in rows:
            x = int(trace[cols["x0"], r]) + int(trace[cols["x1"], r]) * LIMB - OFF_SMALL
            width = _constants(before.markets)[BTC].widths[0]
            trace[cols["lb"], r] = width
            trace[cols["s0"], r] = (width - x) % P
            trace[cols["s1"], r] = 0
    reject(batch.public_inputs, batch.diff, cheat(prep, batch.public_inputs, batch.diff))


class patched_market:  # noqa: N801 - a context manager read as a phrase
    """Market.requirement replaced by the first tier alone for the duration."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mp = monkeypatch

    def __enter__(self) -> None:
        self.mp.setattr(Market, "requirement", _first_tier_only)

    def __exit__(self, *exc: object) -> None:
        self.mp.undo()
