"""Batches: what a sequencer cuts and what L1 receives as public inputs."""

from __future__ import annotations

import pytest

from perpnet.core.batch import (
    BatchBuilder,
    DepositEntry,
    PublicInputs,
    WithdrawalEntry,
    decode_diff,
    encode_diff,
)
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.markets import DEFAULT_MARKETS, USD, MarketSet
from perpnet.core.state import Globals
from perpnet.core.txs import ForcedWithdrawal
from perpnet.testkit import Desk, trader

ALICE, BOB = trader("alice"), trader("bob")


def test_a_batch_records_deposits_withdrawals_forced_requests_and_roots() -> None:
    desk = Desk()
    state = desk.state()
    builder = BatchBuilder(state)
    genesis = state.root()
    assert not isinstance(builder.add(desk.deposit(ALICE, 1_000 * USD)), CoreError)
    assert not isinstance(builder.add(desk.deposit(BOB, 500 * USD)), CoreError)
    refused = builder.add(desk.withdraw(ALICE, 5_000 * USD, 0))
    assert isinstance(refused, CoreError) and refused.code == ErrorCode.INSUFFICIENT_COLLATERAL
    builder.add(desk.withdraw(ALICE, 100 * USD, 0))
    builder.add(ForcedWithdrawal(desk.tick(), 0, BOB.address, 0, 800 * USD, BOB.address))
    batch = builder.cut()

    inputs = batch.public_inputs
    assert batch.batch_id == 0 and len(batch.txs) == 4
    assert inputs.old_root == genesis
    assert inputs.new_root == state.root() == batch.diff.new_root
    assert inputs.deposits == (
        DepositEntry(0, ALICE.address, 0, 1_000 * USD),
        DepositEntry(1, BOB.address, 0, 500 * USD),
    )
    assert inputs.withdrawals == (WithdrawalEntry(ALICE.address, 100 * USD),)
    # Bob asked for 800 but had 500 free: the forced request is served for 500
    assert [(f.request_id, f.requested, f.served) for f in inputs.forced] == [
        (0, 800 * USD, 500 * USD)
    ]
    assert [a.account_id for a in batch.diff.accounts] == [2, 3]

    assert PublicInputs.decode(inputs.encode()) == inputs
    d = batch.diff
    assert decode_diff(encode_diff(d), d.old_root, d.new_root, d.old_globals, d.new_globals) == d
    nxt = builder.cut()
    assert nxt.batch_id == 1 and nxt.txs == () and nxt.public_inputs.old_root == inputs.new_root


def test_public_inputs_decoding_is_strict() -> None:
    desk = Desk()
    builder = BatchBuilder(desk.state())
    builder.add(desk.deposit(ALICE, 1 * USD))
    encoded = builder.cut().public_inputs.encode()
    for bad in (encoded[:-1], encoded + b"\x00", b""):
        with pytest.raises(CoreError) as exc:
            PublicInputs.decode(bad)
        assert exc.value.code == ErrorCode.ENCODING


def test_state_diff_decoding_is_strict() -> None:
    desk = Desk()
    builder = BatchBuilder(desk.state())
    builder.add(desk.deposit(ALICE, 1_000 * USD))
    d = builder.cut().diff
    raw = encode_diff(d)
    for bad in (raw[:-1], raw + b"\x00", b""):
        with pytest.raises(CoreError):
            decode_diff(bad, d.old_root, d.new_root, d.old_globals, d.new_globals)


def test_globals_decode_reads_what_the_state_commits() -> None:
    desk = Desk()
    state = desk.state()
    state.apply(desk.deposit(ALICE, 1_000 * USD))
    state.apply(desk.price(0, 50_000 * USD))
    g = Globals.decode(state.globals_bytes(), state.markets)
    assert (g.next_deposit_id, g.total_deposited, g.num_accounts) == (1, 1_000 * USD, 3)
    assert g.prices[0] == 50_000 * USD and g.indices == {0: 0, 1: 0, 2: 0}
    with pytest.raises(CoreError) as exc:
        Globals.decode(state.globals_bytes(), MarketSet(DEFAULT_MARKETS[1:]))
    assert exc.value.code == ErrorCode.ENCODING
