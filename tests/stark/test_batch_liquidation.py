"""Liquidations, deleveraging and forced withdrawals in the batch AIR.

Completeness: batches mixing liquidations against makers (with a liquidation fee and
with the fund closing its inventory), insurance takeovers, deleveraging (of a user and of
the insurance fund) and forced withdrawals (served in full, in part, not at all, unknown
account) prove and verify. Soundness: a forced withdrawal above the request or above
free collateral, a receipt the counterparty does not pay, a one-sided deleverage and a
liquidation fee the fund receives more of than the liquidated account pays are refused
by the honest prover and rejected when forced through.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from test_batch_soundness import (
    FAST,
    _malicious,
    _prep_from,
    cheat,
    forge_leaf,
    last_row,
    patched,
    reject,
    scenario,
    set_cn,
)

from perpnet.core.accounts import INSURANCE_FUND_ID, SYSTEM_OWNER, Account
from perpnet.core.batch import Batch, BatchBuilder
from perpnet.core.deleverage import ranking
from perpnet.core.encoding import decode_account
from perpnet.core.events import Event, WithdrawalEmitted
from perpnet.core.markets import USD
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Deleverage, ForcedWithdrawal, Liquidate, Tx
from perpnet.stark import StarkError, StarkProverError
from perpnet.stark.batch_layout import small_limbs, v_limbs
from perpnet.stark.batch_proof import Prepared, prepare_batch, prove_batch, verify_batch
from perpnet.stark.batch_trace import build_witness
from perpnet.stark.field import P
from perpnet.testkit import Desk, trader

ALICE, BOB, CAROL, DAVE = (trader(f"lq-{n}") for n in ("alice", "bob", "carol", "dave"))
BTC = 0
TENTH = 10**9  # 0.1 BTC


def setup(
    fund: int = 0, builder: Callable[[ExchangeState], BatchBuilder] = BatchBuilder
) -> tuple[Desk, ExchangeState, BatchBuilder]:
    """alice long 0.2 BTC at 50,000 from bob (short); carol and dave hold 10,000 each."""
    desk = Desk()
    state = desk.state()
    b = builder(state)
    b.add(desk.price(BTC, 50_000 * USD))
    for key, amount in ((ALICE, 1_000 * USD), (BOB, 10_000 * USD), (CAROL, 10_000 * USD),
                        (DAVE, 10_000 * USD)):  # fmt: skip
        b.add(desk.deposit(key, amount))
    if fund:
        b.add(desk.deposit(SYSTEM_OWNER, fund))
    b.add(desk.cross(ALICE, BOB, BTC, False, 2 * TENTH, 50_000 * USD), authenticated=True)
    b.cut()
    return desk, state, b


def run(b: BatchBuilder, txs: list[Tx]) -> Batch:
    for tx in txs:
        result = b.add(tx, authenticated=True)
        assert not isinstance(result, Exception), (tx, result)
    return b.cut()


def served(batch: Batch) -> list[int]:
    return [f.served for f in batch.public_inputs.forced]


def liquidations_and_forced_withdrawals(desk: Desk) -> list[Tx]:
    carol_bid = desk.order(CAROL, BTC, True, 2 * TENTH, 45_500 * USD)
    dave_bid = desk.order(DAVE, BTC, True, TENTH, 45_000 * USD)
    txs: list[Tx] = [
        desk.funding((BTC, 2_000_000)),  # settled before every row below
        desk.price(BTC, 46_000 * USD),
        # against a maker: 0.1 at 45,500, 1 % liquidation fee to the fund, maker fee
        Liquidate(desk.tick(), 2, BTC, TENTH, 45_500 * USD, carol_bid),
        # the insurance fund takes the rest over at the bankruptcy price
        Liquidate(desk.tick(), 2, BTC, TENTH, 0, None),
        # and closes that inventory against dave's bid
        Liquidate(desk.tick(), INSURANCE_FUND_ID, BTC, TENTH, 45_000 * USD, dave_bid),
        ForcedWithdrawal(desk.tick(), 0, BOB.address, 0, 100_000 * USD, BOB.address),
        ForcedWithdrawal(desk.tick(), 1, DAVE.address, 0, 5 * USD, DAVE.address),
        ForcedWithdrawal(desk.tick(), 2, trader("nobody").address, 0, USD, DAVE.address),
        ForcedWithdrawal(desk.tick(), 3, SYSTEM_OWNER, 1, USD, DAVE.address),
        desk.cross(CAROL, DAVE, BTC, False, TENTH // 10, 46_000 * USD),
    ]
    return txs


def test_liquidations_and_forced_withdrawals_verify() -> None:
    desk, state, b = setup()
    before = copy.deepcopy(state)
    txs = liquidations_and_forced_withdrawals(desk)
    batch = run(b, txs)
    assert len(batch.txs) == len(txs)
    got = served(batch)
    assert 0 < got[0] < 100_000 * USD and got[1:] == [5 * USD, 0, 0]
    proof = prove_batch(before, batch, FAST)
    verify_batch(batch.public_inputs, batch.diff, proof.encode(), FAST)


def _deleverage(desk: Desk, state: ExchangeState, account_id: int, size: int) -> Deleverage:
    """Deleverage against the head of the core's queue (the opposite side's best score)."""
    long = state.account(account_id).size(BTC) < 0
    queue = ranking(
        state.accounts.values(), BTC, long, state.markets, state.prices, state.funding_index
    )
    return Deleverage(desk.tick(), account_id, queue[0], BTC, size)


def test_deleveraging_a_user_and_the_fund_verifies() -> None:
    desk, state, b = setup(fund=300 * USD)
    eve = trader("lq-eve")
    # the fund takes alice's 0.2 over (value 498); eve goes long 0.2 at 46,000 from dave
    run(b, [desk.price(BTC, 46_000 * USD), Liquidate(desk.tick(), 2, BTC, 2 * TENTH, 0, None),
            desk.deposit(eve, 1_000 * USD),
            desk.cross(eve, DAVE, BTC, False, 2 * TENTH, 46_000 * USD)])  # fmt: skip
    before = copy.deepcopy(state)
    eve_id = state.account_id(eve.address, 0)
    assert eve_id is not None
    for tx in (desk.funding((BTC, -1_000_000)), desk.price(BTC, 40_000 * USD)):
        assert isinstance(b.add(tx, authenticated=True), tuple)
    # eve and the fund are both bankrupt at 40,000; the fund cannot cover eve
    assert state.risk(state.account(eve_id)).value < 0
    assert state.risk(state.account(INSURANCE_FUND_ID)).value < 0
    for account_id in (eve_id, INSURANCE_FUND_ID):
        dl = _deleverage(desk, state, account_id, TENTH)
        assert isinstance(b.add(dl, authenticated=True), tuple)
    batch = b.cut()
    assert [type(tx).__name__ for tx in batch.txs].count("Deleverage") == 2
    proof = prove_batch(before, batch, FAST)
    verify_batch(batch.public_inputs, batch.diff, proof.encode(), FAST)


# ---------------------------------------------------------------- soundness


def _serve(extra: int, *, check_free: bool) -> Callable[..., tuple[Event, ...]]:
    """A malicious `_forced_withdrawal`: serves the request (+ extra), free collateral or not."""

    def rule(self: ExchangeState, tx: ForcedWithdrawal) -> tuple[Event, ...]:
        account_id = self.ids[(tx.owner, tx.subaccount)]
        account = self._settled_clone(account_id)
        amount = tx.amount + extra
        if check_free:
            amount = min(amount, self.risk(account).free_collateral + extra)
        account.collateral -= amount
        self._commit([account])
        self.next_forced_id += 1
        self.total_withdrawn += amount
        return (WithdrawalEmitted(account_id, tx.recipient, amount, tx.request_id),)

    return rule


def test_forced_withdrawal_served_above_request() -> None:
    def txs(desk: Desk) -> list[Tx]:
        return [ForcedWithdrawal(desk.tick(), 0, trader("sa").address, 0, USD, DAVE.address)]

    rule = _serve(USD, check_free=True)
    with patched("_forced_withdrawal", rule):
        before, batch = scenario(txs)
    assert served(batch) == [2 * USD]
    with pytest.raises(StarkProverError):  # the honest core serves 1 USD, not 2
        prepare_batch(before, batch)
    with patched("_forced_withdrawal", rule):
        witness = build_witness(copy.deepcopy(before), batch.txs)
    with pytest.raises(StarkError, match="more than requested"):
        _prep_from(before, batch, witness)  # the verifier's statement check refuses it


def test_forced_withdrawal_above_free_collateral() -> None:
    def txs(desk: Desk) -> list[Tx]:
        return [
            ForcedWithdrawal(desk.tick(), 0, trader("sa").address, 0, 25_000 * USD, DAVE.address)
        ]

    _malicious("_forced_withdrawal", _serve(0, check_free=False), txs)


def _rows(prep: Prepared, kind: str) -> list[int]:
    return [int(r) for r in np.nonzero(prep.witness.trace[prep.air.cols[kind]])[0]]


def test_takeover_receipt_not_paid_by_the_fund() -> None:
    desk, state, b = setup(fund=300 * USD)
    before = copy.deepcopy(state)
    batch = run(b, [desk.price(BTC, 46_000 * USD), Liquidate(desk.tick(), 2, BTC, TENTH, 0, None)])

    def unpaid(acct: Account) -> None:  # the fund takes the position but pays nothing
        old = next(a.old_leaf for a in batch.diff.accounts if a.account_id == INSURANCE_FUND_ID)
        acct.collateral = decode_account(INSURANCE_FUND_ID, old).collateral

    pi, diff = forge_leaf(before, batch, INSURANCE_FUND_ID, unpaid)
    with pytest.raises(StarkProverError):
        prepare_batch(before, dataclasses.replace(batch, diff=diff, public_inputs=pi))
    prep = prepare_batch(before, batch)
    (row,) = _rows(prep, "k_lcb")
    assert row == last_row(prep, INSURANCE_FUND_ID)
    fund = decode_account(
        INSURANCE_FUND_ID, next(a.new_leaf for a in diff.accounts if a.account_id == 0)
    )
    set_cn(prep, row, fund.collateral)
    reject(pi, diff, cheat(prep, pi, diff))


def test_deleverage_moving_one_side_only() -> None:
    desk, state, b = setup()
    before = copy.deepcopy(state)
    batch = run(b, [desk.price(BTC, 44_000 * USD), Deleverage(desk.tick(), 2, 3, BTC, TENTH)])

    def keeps_position(acct: Account) -> None:  # bob pays but stays short 0.2
        old = next(a.old_leaf for a in batch.diff.accounts if a.account_id == 3)
        acct.positions = decode_account(3, old).positions
        for p in acct.positions.values():
            p.funding_index = 0

    pi, diff = forge_leaf(before, batch, 3, keeps_position)
    with pytest.raises(StarkProverError):
        prepare_batch(before, dataclasses.replace(batch, diff=diff, public_inputs=pi))
    prep = prepare_batch(before, batch)
    cols, trace = prep.air.cols, prep.witness.trace
    (row,) = _rows(prep, "k_lcb")
    assert row == last_row(prep, 3)
    old_lots = -2_000
    trace[cols["D"], row] = 0
    for name, limb in zip(("a0", "a1"), small_limbs(old_lots), strict=True):
        trace[cols[name], row] = limb
    reject(pi, diff, cheat(prep, pi, diff))


def test_liquidation_fee_credited_twice() -> None:
    desk, state, b = setup()
    before = copy.deepcopy(state)
    bid = desk.order(CAROL, BTC, True, TENTH, 45_500 * USD)
    batch = run(
        b, [desk.price(BTC, 46_000 * USD), Liquidate(desk.tick(), 2, BTC, TENTH, 45_500 * USD, bid)]
    )

    def doubled(acct: Account) -> None:
        acct.collateral *= 2

    pi, diff = forge_leaf(before, batch, INSURANCE_FUND_ID, doubled)
    with pytest.raises(StarkProverError):
        prepare_batch(before, dataclasses.replace(batch, diff=diff, public_inputs=pi))
    prep = prepare_batch(before, batch)
    (row,) = _rows(prep, "k_lfi")
    fund = decode_account(0, next(a for a in diff.accounts if a.account_id == 0).new_leaf)
    set_cn(prep, row, fund.collateral)
    # a consistent row: V is the doubled fee too, carries recomputed; only the copy of the
    # liquidated side's fee (next row) is broken
    cols, trace = prep.air.cols, prep.witness.trace
    for i, limb in enumerate(v_limbs(fund.collateral)):
        trace[cols[f"v{i}"], row] = limb
    w = 0
    for i in range(2):
        d = int(trace[cols[f"cn{i}"], row]) - int(trace[cols[f"co{i}"], row])
        w = (d - int(trace[cols[f"v{i}"], row]) + w) // 2048
        trace[cols[f"wc{i}"], row] = w % P
    reject(pi, diff, cheat(prep, pi, diff))
