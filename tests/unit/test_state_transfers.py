"""Deposits, withdrawals, transfers, forced withdrawals and the state commitment."""

from __future__ import annotations

import dataclasses

import pytest

from perpnet.core.accounts import INSURANCE_FUND_ID, SYSTEM_OWNER
from perpnet.core.crypto import keccak
from perpnet.core.encoding import decode_account, encode_account
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.events import DepositCredited, WithdrawalEmitted
from perpnet.core.markets import USD
from perpnet.core.smt import verify_proof
from perpnet.core.state import AccountDiff, ExchangeState, OrderDiff, order_leaf
from perpnet.core.txs import Deposit, ForcedWithdrawal, Transfer, Tx, Withdraw
from perpnet.testkit import Desk, trader

ALICE, BOB, CAROL = (trader(n) for n in ("alice", "bob", "carol"))
BTC = 0
CENT_BTC = 10**8
P50K = 50_000 * USD
FAR = 2**62


# ----------------------------------------------------------------------------- deposits


def test_deposits_credit_accounts_in_order(desk: Desk, reject) -> None:
    state = desk.state()
    assert state.apply(desk.deposit(ALICE, 100 * USD)) == (DepositCredited(0, 2, 100 * USD),)
    assert state.apply(desk.deposit(BOB, 5 * USD)) == (DepositCredited(1, 3, 5 * USD),)
    assert state.apply(desk.deposit(ALICE, 1)) == (DepositCredited(2, 2, 1),)
    assert state.account(2).collateral == 100 * USD + 1
    assert state.account_id(ALICE.address, 0) == 2
    t = desk.tick()
    for deposit_id in (2, 4, 0):  # replayed, skipped ahead, ancient
        reject(state, Deposit(t, deposit_id, CAROL.address, 0, USD), ErrorCode.DEPOSIT_ORDER)
    reject(state, Deposit(t, 3, CAROL.address, 0, 0), ErrorCode.INVALID_FIELD)
    reject(state, Deposit(t, 3, b"\x01" * 19, 0, USD), ErrorCode.INVALID_FIELD)
    reject(state, Deposit(t, 3, CAROL.address, 2**32, USD), ErrorCode.INVALID_FIELD)
    assert state.apply(Deposit(t, 3, CAROL.address, 7, USD)) == (DepositCredited(3, 4, USD),)
    assert (state.next_deposit_id, state.total_deposited) == (4, 106 * USD + 1)


# --------------------------------------------------------------------------- withdrawals


def test_withdrawal_nonces_and_event(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 100 * USD))
    first = desk.withdraw(ALICE, 30 * USD, nonce=0)
    assert state.apply(first) == (WithdrawalEmitted(2, ALICE.address, 30 * USD, None),)
    reject(state, dataclasses.replace(first, timestamp_ms=desk.tick()), ErrorCode.BAD_NONCE)
    reject(state, desk.withdraw(ALICE, USD, nonce=2), ErrorCode.BAD_NONCE)
    state.apply(desk.withdraw(ALICE, 20 * USD, nonce=1))
    alice = state.account(2)
    assert (alice.collateral, alice.nonce) == (50 * USD, 2)
    assert state.total_withdrawn == 50 * USD
    reject(state, desk.withdraw(ALICE, 50 * USD + 1, nonce=2), ErrorCode.INSUFFICIENT_COLLATERAL)
    reject(state, desk.withdraw(ALICE, 0, nonce=2), ErrorCode.INVALID_FIELD)
    reject(state, desk.withdraw(BOB, USD, nonce=0), ErrorCode.UNKNOWN_ACCOUNT)
    state.apply(desk.withdraw(ALICE, 50 * USD, nonce=2))
    assert state.account(2).collateral == 0


def test_withdrawal_limited_to_free_collateral(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 1_000 * USD))
    state.apply(desk.deposit(BOB, 10_000 * USD))
    state.apply(desk.price(BTC, P50K))
    state.apply(desk.cross(BOB, ALICE, BTC, True, 10 * CENT_BTC, P50K))
    # alice: -4,002.5 collateral, long 0.1: value 997.5 - initial 250 = 747.5 free
    assert state.risk(state.account(2)).free_collateral == 747_500_000
    too_much = desk.withdraw(ALICE, 747_500_001, nonce=0)
    reject(state, too_much, ErrorCode.INSUFFICIENT_COLLATERAL)
    state.apply(desk.withdraw(ALICE, 747_500_000, nonce=0))
    assert state.account(2).collateral == -4_750 * USD


def test_withdrawal_signature_and_expiry(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 100 * USD))
    domain = desk.config.domain
    t = desk.tick()
    expired = Withdraw(t, ALICE.address, 0, USD, ALICE.address, 0, t - 1).signed(ALICE, domain)
    reject(state, expired, ErrorCode.EXPIRED)
    honest = Withdraw(t, ALICE.address, 0, USD, BOB.address, 0, FAR)
    by_bob = honest.signed(BOB, domain)
    reject(state, by_bob, ErrorCode.BAD_SIGNATURE)
    redirected = dataclasses.replace(honest.signed(ALICE, domain), recipient=CAROL.address)
    reject(state, redirected, ErrorCode.BAD_SIGNATURE)
    reject(state, dataclasses.replace(honest, recipient=b"\x01"), ErrorCode.INVALID_FIELD)
    events = state.apply(by_bob, authenticated=True)
    assert events == (WithdrawalEmitted(2, BOB.address, USD, None),)
    assert state.account(2).collateral == 99 * USD


def test_protocol_accounts_cannot_be_spent(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(SYSTEM_OWNER, 10 * USD))  # credits the insurance fund
    assert state.account(INSURANCE_FUND_ID).collateral == 10 * USD
    t = desk.tick()
    tx = Withdraw(t, SYSTEM_OWNER, 0, USD, ALICE.address, 0, FAR, b"\x00" * 65)
    reject(state, tx, ErrorCode.NOT_OWNER, authenticated=True)


# ----------------------------------------------------------------------------- transfers


def test_transfer_creates_the_receiver(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 100 * USD))
    assert state.apply(desk.transfer(ALICE, BOB.address, 40 * USD, nonce=0)) == ()
    assert state.account_id(BOB.address, 0) == 3
    assert (state.account(2).collateral, state.account(3).collateral) == (60 * USD, 40 * USD)
    assert (state.account(2).nonce, state.account(3).nonce) == (1, 0)
    reject(state, desk.transfer(ALICE, BOB.address, USD, nonce=0), ErrorCode.BAD_NONCE)
    reject(
        state,
        desk.transfer(ALICE, BOB.address, 60 * USD + 1, nonce=1),
        ErrorCode.INSUFFICIENT_COLLATERAL,
    )
    reject(state, desk.transfer(ALICE, ALICE.address, USD, nonce=1), ErrorCode.INVALID_FIELD)
    reject(state, desk.transfer(ALICE, SYSTEM_OWNER, USD, nonce=1), ErrorCode.INVALID_FIELD)
    fee_pool = desk.transfer(ALICE, SYSTEM_OWNER, USD, nonce=1, to_subaccount=1)
    reject(state, fee_pool, ErrorCode.INVALID_FIELD)
    # bob's account existing now, a second transfer adds to it
    state.apply(desk.transfer(ALICE, BOB.address, 60 * USD, nonce=1))
    assert (state.account(2).collateral, state.account(3).collateral) == (0, 100 * USD)
    assert state.total_deposited == 100 * USD and state.total_withdrawn == 0


def test_transfer_funds_an_isolated_subaccount(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 1_000 * USD))
    state.apply(desk.deposit(BOB, 10_000 * USD))
    state.apply(desk.price(BTC, P50K))
    state.apply(desk.transfer(ALICE, ALICE.address, 101 * USD, nonce=0, to_subaccount=128))
    iso = state.account_of(ALICE.address, 128)
    assert (iso.account_id, iso.collateral) == (4, 101 * USD)
    # 0.04 BTC × 50,000 = 2,000: initial 100 + taker fee 1 = exactly the 101 moved
    ask = desk.order(BOB, BTC, False, 4 * CENT_BTC, P50K)
    state.apply(desk.trade(ask, desk.order(ALICE, BTC, True, 4 * CENT_BTC, P50K, subaccount=128)))
    assert state.risk(state.account(4)).free_collateral == 0
    # nothing more can leave it, while subaccount 0 keeps its 899
    reject(
        state,
        desk.transfer(ALICE, ALICE.address, 1, nonce=0, subaccount=128),
        ErrorCode.INSUFFICIENT_COLLATERAL,
    )
    assert state.account(2).collateral == 899 * USD


def test_transfer_signature(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 100 * USD))
    t = desk.tick()
    tx = Transfer(t, ALICE.address, 0, BOB.address, 0, USD, 0, FAR)
    signed = tx.signed(ALICE, desk.config.domain)
    reject(state, dataclasses.replace(signed, amount=2 * USD), ErrorCode.BAD_SIGNATURE)
    reject(state, dataclasses.replace(signed, to_subaccount=1), ErrorCode.BAD_SIGNATURE)
    reject(state, dataclasses.replace(signed, expiry_ms=t - 1), ErrorCode.EXPIRED)
    state.apply(signed)
    assert state.account(3).collateral == USD


# --------------------------------------------------------------------- forced withdrawals


def forced(
    desk: Desk, request_id: int, owner: bytes, amount: int, sub: int = 0
) -> ForcedWithdrawal:
    return ForcedWithdrawal(desk.tick(), request_id, owner, sub, amount, owner)


def test_forced_withdrawals_served_up_to_free_collateral_in_order(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 1_000 * USD))
    state.apply(desk.deposit(BOB, 10_000 * USD))
    state.apply(desk.price(BTC, P50K))
    state.apply(desk.cross(BOB, ALICE, BTC, True, 10 * CENT_BTC, P50K))
    # alice's free collateral 747.5 (see the withdrawal test): asking 1,000 gets 747.5
    events = state.apply(forced(desk, 0, ALICE.address, 1_000 * USD))
    assert events == (WithdrawalEmitted(2, ALICE.address, 747_500_000, 0),)
    assert state.risk(state.account(2)).free_collateral == 0
    reject(state, forced(desk, 0, ALICE.address, USD), ErrorCode.DEPOSIT_ORDER)
    reject(state, forced(desk, 2, ALICE.address, USD), ErrorCode.DEPOSIT_ORDER)
    # nothing free: served 0, yet the request is consumed
    assert state.apply(forced(desk, 1, ALICE.address, USD)) == (
        WithdrawalEmitted(2, ALICE.address, 0, 1),
    )
    # unknown account: served 0 with no account
    assert state.apply(forced(desk, 2, CAROL.address, USD)) == (
        WithdrawalEmitted(None, CAROL.address, 0, 2),
    )
    # bob (maker, short 0.1): 14,999 collateral, value 9,999, free 9,749: 100 is served whole
    assert state.apply(forced(desk, 3, BOB.address, 100 * USD)) == (
        WithdrawalEmitted(3, BOB.address, 100 * USD, 3),
    )
    # a forced request never spends the protocol's accounts
    assert state.apply(forced(desk, 4, SYSTEM_OWNER, USD)) == (
        WithdrawalEmitted(INSURANCE_FUND_ID, SYSTEM_OWNER, 0, 4),
    )
    bad = ForcedWithdrawal(desk.tick(), 5, ALICE.address, 0, USD, b"\x01" * 21)
    reject(state, bad, ErrorCode.INVALID_FIELD)
    assert state.next_forced_id == 5
    assert state.total_withdrawn == 747_500_000 + 100 * USD
    assert state.account(3).nonce == 0  # forced withdrawals do not use the nonce


# ---------------------------------------------------------------------- state commitment


def scenario(desk: Desk) -> list[Tx]:
    txs: list[Tx] = [
        desk.deposit(ALICE, 1_000 * USD),
        desk.deposit(BOB, 1_000 * USD),
        desk.price(BTC, P50K),
        desk.cross(ALICE, BOB, BTC, True, CENT_BTC, P50K),
        desk.funding((BTC, 100_000)),
        desk.transfer(BOB, CAROL.address, 10 * USD, nonce=0),
        desk.withdraw(ALICE, 5 * USD, nonce=0),
    ]
    return txs


def test_batch_diff_lists_exactly_the_touched_accounts(desk: Desk, reject) -> None:
    state = desk.state()
    state.apply(desk.deposit(ALICE, 1_000 * USD))
    state.apply(desk.deposit(BOB, 1_000 * USD))
    state.apply(desk.deposit(CAROL, 1_000 * USD))
    state.apply(desk.price(BTC, P50K))
    old_root = state.begin_batch()
    old_leaves = {i: encode_account(state.account(i)) for i in (1, 2, 3)}
    ask = desk.order(ALICE, BTC, False, 2 * CENT_BTC, P50K)
    take = desk.order(BOB, BTC, True, CENT_BTC, P50K)
    state.apply(desk.trade(ask, take))
    # a refused transaction inside the batch adds nothing to it
    reject(state, desk.withdraw(CAROL, 10_000 * USD, nonce=0), ErrorCode.INSUFFICIENT_COLLATERAL)
    state.apply(desk.deposit(BOB, 1))
    state.apply(desk.transfer(BOB, b"\x42" * 20, USD, nonce=0))  # a new account, id 5
    diff = state.end_batch()
    assert diff.old_root == old_root
    assert diff.new_root == state.root()
    assert [d.account_id for d in diff.accounts] == [1, 2, 3, 5]
    for d in diff.accounts[:3]:
        assert d == AccountDiff(d.account_id, old_leaves[d.account_id], d.new_leaf)
        assert d.new_leaf == encode_account(state.account(d.account_id))
        assert d.old_leaf != d.new_leaf
    assert diff.accounts[3] == AccountDiff(5, b"", encode_account(state.account(5)))
    assert decode_account(5, diff.accounts[3].new_leaf).collateral == USD
    # fills: the maker's order went first into the order tree
    assert diff.orders == (
        OrderDiff(0, ask.hash, 0, CENT_BTC),
        OrderDiff(1, take.hash, 0, CENT_BTC),
    )
    assert diff.old_globals != diff.new_globals
    assert state.order_tree.get(0) == order_leaf(ask.hash, CENT_BTC)
    # an empty batch moves nothing
    root = state.begin_batch()
    empty = state.end_batch()
    assert (empty.old_root, empty.new_root, empty.accounts, empty.orders) == (root, root, (), ())


def test_account_proofs_verify_against_the_accounts_root(desk: Desk) -> None:
    state = desk.state()
    for tx in scenario(desk):
        state.apply(tx)
    for account_id in (0, 1, 2, 3, 4):
        leaf, siblings = state.account_proof(account_id)
        assert leaf == encode_account(state.account(account_id))
        root = state.account_tree.root()
        assert verify_proof(root, account_id, keccak(leaf), siblings, 32)
        assert not verify_proof(root, account_id, keccak(leaf + b"\x00"), siblings, 32)
        assert not verify_proof(root, account_id ^ 1, keccak(leaf), siblings, 32)
    # a proof goes stale as soon as its account changes
    leaf, siblings = state.account_proof(2)
    state.apply(desk.deposit(ALICE, 1))
    state.root()
    assert not verify_proof(state.account_tree.root(), 2, keccak(leaf), siblings, 32)


def test_same_transactions_give_the_same_root(desk: Desk) -> None:
    txs = scenario(desk)
    a, b = ExchangeState(desk.config), ExchangeState(desk.config)
    roots = []
    for tx in txs:
        a.apply(tx)
        roots.append(a.root())
    for tx in txs:
        b.apply(tx)
    assert b.root() == a.root() == roots[-1]
    assert len(set(roots)) == len(roots)  # every transaction moved the root
    # a refused transaction in the middle of a replay leaves no trace
    c = ExchangeState(desk.config)
    for i, tx in enumerate(txs):
        c.apply(tx)
        if i == 3:
            with pytest.raises(CoreError) as info:
                c.apply(txs[3])  # the same trade again: overfill
            assert info.value.code == ErrorCode.OVERFILL
    assert c.root() == a.root()
    # a different history gives a different root
    d = ExchangeState(desk.config)
    for tx in txs[:-1]:
        d.apply(tx)
    d.apply(desk.withdraw(ALICE, 6 * USD, nonce=0))
    assert d.root() != a.root()
