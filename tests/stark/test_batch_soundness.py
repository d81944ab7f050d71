"""Soundness: invalid batches are refused by the honest prover and, forced through by a
prover that skips its own checks, rejected by the verifier; tampering is rejected.

A malicious sequencer is simulated by patching one rule out of the core; the batch it
cuts is the invalid batch. The cheating prover either builds its witness with the same
patched core or tampers the honest witness to express the invalid batch.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np
import pytest

from perpnet.core.accounts import Account
from perpnet.core.batch import Batch, BatchBuilder, PublicInputs, encode_diff
from perpnet.core.crypto import keccak
from perpnet.core.encoding import decode_account, encode_account
from perpnet.core.markets import USD, MarketSet
from perpnet.core.state import ExchangeState, StateDiff
from perpnet.core.txs import Tx
from perpnet.stark import ProofParams, StarkError, StarkProverError
from perpnet.stark.batch_air import BatchAir
from perpnet.stark.batch_layout import c_limbs
from perpnet.stark.batch_proof import (
    BatchProof,
    Prepared,
    prepare_batch,
    prove_batch,
    prove_prepared,
    verify_batch,
)
from perpnet.stark.batch_statement import derive_public
from perpnet.stark.batch_trace import build_witness, set_multiplicities
from perpnet.stark.prover import prove
from perpnet.testkit import Desk, trader

FAST = ProofParams(num_queries=20, grinding_bits=4)
A, B, C = trader("sa"), trader("sb"), trader("sc")


@contextmanager
def patched(name: str, replacement: Callable[..., Any]) -> Iterator[None]:
    """The malicious sequencer: one core rule replaced for the duration."""
    original = getattr(ExchangeState, name)
    setattr(ExchangeState, name, replacement)
    try:
        yield
    finally:
        setattr(ExchangeState, name, original)


def scenario(extra: Callable[[Desk], list[Tx]]) -> tuple[ExchangeState, Batch]:
    """A funded exchange (A, B long/short BTC) and a batch of `extra` transactions."""
    desk = Desk()
    state = desk.state()
    b = BatchBuilder(state)
    b.add(desk.price(0, 50_000 * USD))
    for k in (A, B, C):
        b.add(desk.deposit(k, 20_000 * USD))
    b.add(desk.cross(A, B, 0, True, 10**6 * 10, 50_000 * USD))
    b.cut()
    before = copy.deepcopy(state)
    for tx in extra(desk):
        result = b.add(tx, authenticated=True)
        assert not isinstance(result, Exception), result
    return before, b.cut()


def honest_txs(desk: Desk) -> list[Tx]:
    return [
        desk.deposit(C, 5 * USD),
        desk.deposit(A, 7 * USD),
        desk.cross(A, C, 0, False, 10**6 * 4, 50_000 * USD),
        desk.withdraw(C, 3 * USD, 0),
    ]


@cache
def honest() -> tuple[ExchangeState, Batch, bytes]:
    before, batch = scenario(honest_txs)
    return before, batch, prove_batch(before, batch, FAST).encode()


def cheat(prep: Prepared, pi: PublicInputs, diff: StateDiff) -> bytes:
    """Prove `prep`'s (possibly tampered) trace against another statement, unchecked."""
    air = BatchAir(derive_public(pi, diff, prep.extras, MarketSet()))
    lookups = air.lookup_values(prep.witness.trace)
    set_multiplicities(air.cols, prep.witness.trace, lookups, strict=False)
    return BatchProof(prep.extras, prove(air, prep.witness.trace, FAST, strict=False)).encode()


def reject(pi: PublicInputs, diff: StateDiff, proof: bytes) -> None:
    with pytest.raises(StarkError):
        verify_batch(pi, diff, proof, FAST)


def forge_leaf(
    before: ExchangeState, batch: Batch, account_id: int, change: Callable[[Account], None]
) -> tuple[PublicInputs, StateDiff]:
    """The batch with one new leaf changed and every root and hash made consistent."""
    after = copy.deepcopy(before)
    for tx in batch.txs:
        after.apply(tx, authenticated=True)
    after.root()  # flush the replayed accounts into the tree
    entries = []
    for a in batch.diff.accounts:
        if a.account_id == account_id:
            acct = decode_account(account_id, a.new_leaf)
            change(acct)
            a = dataclasses.replace(a, new_leaf=encode_account(acct))
            after.account_tree.set(account_id, keccak(a.new_leaf))
        entries.append(a)
    accounts_root = after.account_tree.root()
    pi = batch.public_inputs
    new_root = keccak(accounts_root + pi.orders_root + keccak(pi.globals))
    diff = dataclasses.replace(batch.diff, accounts=tuple(entries), new_root=new_root)
    pi = dataclasses.replace(pi, accounts_root=accounts_root, diff_hash=keccak(encode_diff(diff)))
    return pi, diff


def last_row(prep: Prepared, account_id: int) -> int:
    return prep.witness.last_version[account_id] - 1


def set_cn(prep: Prepared, row: int, collateral: int) -> None:
    cols = prep.air.cols
    for i, limb in enumerate(c_limbs(collateral)):
        prep.witness.trace[cols[f"cn{i}"], row] = limb


def account_id(state: ExchangeState, key: Any) -> int:
    found = state.account_id(key.address, 0)
    assert found is not None
    return found


# ---------------------------------------------------------------- the corpus


def test_conservation_broken_by_one_quantum() -> None:
    before, batch, _ = honest()
    c_id = account_id(before, C)

    def plus_one(acct: Account) -> None:
        acct.collateral += 1

    pi, diff = forge_leaf(before, batch, c_id, plus_one)
    forged = dataclasses.replace(batch, diff=diff, public_inputs=pi)
    with pytest.raises(StarkProverError):
        prepare_batch(before, forged)
    prep = prepare_batch(before, batch)
    row = last_row(prep, c_id)
    after = decode_account(c_id, next(a.new_leaf for a in diff.accounts if a.account_id == c_id))
    set_cn(prep, row, after.collateral)  # the last write now says one quantum more
    reject(pi, diff, cheat(prep, pi, diff))


def test_trade_applied_to_one_side_only() -> None:
    before, batch, _ = honest()
    c_id = account_id(before, C)
    old = next(a.old_leaf for a in batch.diff.accounts if a.account_id == c_id)
    prior = decode_account(c_id, old)

    def no_trade(acct: Account) -> None:  # C keeps its deposit and withdrawal, not the fill
        acct.positions = prior.positions
        acct.collateral = prior.collateral + 5 * USD - 3 * USD

    pi, diff = forge_leaf(before, batch, c_id, no_trade)
    with pytest.raises(StarkProverError):
        prepare_batch(before, dataclasses.replace(batch, diff=diff, public_inputs=pi))
    prep = prepare_batch(before, batch)
    cols, trace = prep.air.cols, prep.witness.trace
    taker = int(np.nonzero(trace[cols["k_tk"]])[0][-1])
    trace[cols["D"], taker] = 0  # the taker's position does not move ...
    for i in range(5):  # ... nor its collateral
        trace[cols[f"cn{i}"], taker] = trace[cols[f"co{i}"], taker]
    set_cn(prep, last_row(prep, c_id), prior.collateral + 2 * USD)
    reject(pi, diff, cheat(prep, pi, diff))


def test_forged_state_diff_entry() -> None:
    before, batch, proof = honest()
    a_id = account_id(before, A)

    def richer(acct: Account) -> None:
        acct.collateral += 1_000 * USD

    pi, diff = forge_leaf(before, batch, a_id, richer)
    reject(pi, diff, proof)  # consistent roots, but the trace does not end there
    prep = prepare_batch(before, batch)
    reject(pi, diff, cheat(prep, pi, diff))
    # the same entry changed without updating the public inputs: diff_hash catches it
    reject(batch.public_inputs, diff, proof)


def test_forged_old_leaf() -> None:
    _, batch, proof = honest()
    entries = list(batch.diff.accounts)
    entries[0] = dataclasses.replace(entries[0], old_leaf=entries[0].new_leaf)
    diff = dataclasses.replace(batch.diff, accounts=tuple(entries))
    pi = dataclasses.replace(batch.public_inputs, diff_hash=keccak(encode_diff(diff)))
    reject(pi, diff, proof)


def test_wrong_new_root() -> None:
    _, batch, proof = honest()
    pi = dataclasses.replace(batch.public_inputs, accounts_root=keccak(b"elsewhere"))
    diff = dataclasses.replace(batch.diff, new_root=pi.new_root)
    pi = dataclasses.replace(pi, diff_hash=keccak(encode_diff(diff)))
    reject(pi, diff, proof)


def test_reordered_deposit() -> None:
    before, batch, proof = honest()
    d0, d1 = batch.public_inputs.deposits
    swapped = (
        dataclasses.replace(d0, owner=d1.owner, amount=d1.amount),
        dataclasses.replace(d1, owner=d0.owner, amount=d0.amount),
    )
    pi = dataclasses.replace(batch.public_inputs, deposits=swapped)
    reject(pi, batch.diff, proof)
    prep = prepare_batch(before, batch)
    with pytest.raises(StarkProverError):
        prove_prepared(
            dataclasses.replace(
                prep, air=BatchAir(derive_public(pi, batch.diff, prep.extras, before.markets))
            ),
            FAST,
        )
    reject(pi, batch.diff, cheat(prep, pi, batch.diff))
    ids_swapped = dataclasses.replace(batch.public_inputs, deposits=(d1, d0))
    reject(ids_swapped, batch.diff, proof)


def _malicious(name: str, rule: Callable[..., Any], txs: Callable[[Desk], list[Tx]]) -> None:
    """The invalid batch is refused honestly; a consistent cheat trace is then built
    with the patched core and must be rejected by the verifier."""
    with patched(name, rule):
        before, batch = scenario(txs)
    with pytest.raises(StarkProverError):
        prepare_batch(before, batch)
    with patched(name, rule):
        state = copy.deepcopy(before)
        witness = build_witness(state, batch.txs)
    prep = _prep_from(before, batch, witness)
    reject(batch.public_inputs, batch.diff, cheat(prep, batch.public_inputs, batch.diff))


def _prep_from(before: ExchangeState, batch: Batch, witness: Any) -> Prepared:
    from perpnet.stark.batch_statement import StatementExtras

    ids = [a.account_id for a in batch.diff.accounts]
    slots = [o.slot for o in batch.diff.orders]
    extras = StatementExtras(
        before.account_tree.root(),
        before.order_tree.root(),
        tuple(witness.ticks),
        tuple(witness.last_version.get(i, 0) for i in ids),
        witness.trace.shape[1],
        before.account_tree.multiproof(ids).to_bytes(),
        before.order_tree.multiproof(slots).to_bytes() if slots else b"",
    )
    air = BatchAir(derive_public(batch.public_inputs, batch.diff, extras, before.markets))
    return Prepared(air, witness, extras)


def _no_margin_check(self: ExchangeState, *args: object) -> None:
    return None


def _spend_anything(self: ExchangeState, account: Account, amount: int, *rest: object) -> None:
    account.collateral -= amount


def test_account_left_under_maintenance() -> None:
    def txs(desk: Desk) -> list[Tx]:
        return [desk.cross(C, A, 0, True, 10**6 * 80_000, 50_000 * USD)]  # 20x leverage

    _malicious("_check_after_trade", _no_margin_check, txs)


def test_withdrawal_above_free_collateral() -> None:
    def txs(desk: Desk) -> list[Tx]:
        return [desk.withdraw(A, 25_000 * USD, 0)]

    _malicious("_spend", _spend_anything, txs)


# ---------------------------------------------------------------- tampering


def test_flipped_proof_bytes_are_rejected() -> None:
    _, batch, proof = honest()
    positions = sorted({int(x) for x in np.linspace(0, len(proof) - 1, 48)} | set(range(0, 80, 7)))
    for pos in positions:
        bad = bytearray(proof)
        bad[pos] ^= 0x10
        with pytest.raises(StarkError):
            verify_batch(batch.public_inputs, batch.diff, bytes(bad), FAST)


def test_lookup_counted_against_the_other_half_of_the_table_is_rejected() -> None:
    """The table holds v and v + 1,024 on row v: a count moved from one to the other
    (a value the rows never looked up claimed instead of one they did) fails LogUp."""
    before, batch = scenario(honest_txs)
    prep = prepare_batch(before, batch)
    cols, trace = prep.air.cols, prep.witness.trace
    proof = BatchProof(prep.extras, prove(prep.air, trace, FAST)).encode()
    verify_batch(batch.public_inputs, batch.diff, proof, FAST)  # the honest trace
    (rows,) = np.nonzero(trace[cols["mult"]])
    row = int(rows[-1])
    trace[cols["mult"], row] -= 1
    trace[cols["mult2"], row] += 1
    forged = BatchProof(prep.extras, prove(prep.air, trace, FAST, strict=False)).encode()
    reject(batch.public_inputs, batch.diff, forged)


@pytest.mark.parametrize(
    "field",
    ["batch_id", "old_root", "accounts_root", "orders_root", "globals", "deposits",
     "withdrawals", "diff_hash"],
)  # fmt: skip
def test_changed_public_input_is_rejected(field: str) -> None:
    _, batch, proof = honest()
    pi = batch.public_inputs
    value = getattr(pi, field)
    if isinstance(value, int):
        changed: Any = value + 1
    elif isinstance(value, bytes):
        changed = value[:-1] + bytes([value[-1] ^ 1])
    else:
        changed = value[:-1]
    reject(dataclasses.replace(pi, **{field: changed}), batch.diff, proof)


def test_fast_leaf_decoder_agrees_with_the_core() -> None:
    from perpnet.core.errors import CoreError
    from perpnet.stark.batch_statement import decode_leaf

    _, batch, _ = honest()
    for a in batch.diff.accounts:
        for leaf in (a.old_leaf, a.new_leaf):
            if not leaf:
                continue
            core = decode_account(a.account_id, leaf)
            fast = decode_leaf(a.account_id, leaf)
            assert fast is not None
            assert (fast.owner, fast.subaccount, fast.collateral, fast.nonce) == (
                core.owner, core.subaccount, core.collateral, core.nonce,
            )  # fmt: skip
            assert fast.positions == {
                m: (p.size, p.funding_index) for m, p in core.positions.items()
            }
            for bad in (leaf[:-1], leaf + b"\x00", leaf[:48] + bytes([leaf[48] + 1]) + leaf[49:]):
                with pytest.raises(CoreError):
                    decode_account(a.account_id, bad)
                with pytest.raises(StarkError):
                    decode_leaf(a.account_id, bad)


# ------------------------------------------------- the verifier's fast paths agree


def test_fast_diff_encoder_agrees_with_the_core() -> None:
    from perpnet.core.errors import CoreError
    from perpnet.stark.batch_statement import fast_encode_diff

    _, batch, _ = honest()
    assert fast_encode_diff(batch.diff) == encode_diff(batch.diff)
    empty = dataclasses.replace(batch.diff, accounts=(), orders=())
    assert fast_encode_diff(empty) == encode_diff(empty)
    a = batch.diff.accounts[0]
    for bad in (
        dataclasses.replace(a, account_id=1 << 32),
        dataclasses.replace(a, account_id=-1),
        dataclasses.replace(a, new_leaf=b"\x00" * 0x10000),
    ):
        diff = dataclasses.replace(batch.diff, accounts=(bad, *batch.diff.accounts[1:]))
        with pytest.raises(CoreError):
            encode_diff(diff)
        with pytest.raises(CoreError):
            fast_encode_diff(diff)


def test_fused_leaf_ledger_agrees_with_the_decoder() -> None:
    from perpnet.stark.batch_layout import market_constants
    from perpnet.stark.batch_statement import _c_limbs, _leaf_ledger, _market_slots, decode_leaf

    before, batch, _ = honest()
    consts = market_constants(before.markets)
    slots = _market_slots(consts)
    for a in batch.diff.accounts:
        for leaf in (a.old_leaf, a.new_leaf):
            if not leaf:
                continue
            ref = decode_leaf(a.account_id, leaf)
            assert ref is not None
            key, led = _leaf_ledger(a.account_id, leaf, consts, slots)
            assert key == (ref.owner, ref.subaccount)
            assert (led.collateral, led.nonce) == (ref.collateral, ref.nonce)
            for j, c in enumerate(consts):
                size, index = ref.positions.get(c.market_id, (0, 0))
                assert led.lots[j] * c.step_size == size
                assert led.funding[j] == index
            assert _c_limbs(led.collateral) == c_limbs(led.collateral)
            for bad in (leaf[:-1], leaf + b"\x00", leaf[:48] + bytes([leaf[48] + 1]) + leaf[49:]):
                with pytest.raises(StarkError):
                    _leaf_ledger(a.account_id, bad, consts, slots)
    for x in (0, 1, -1, (1 << 49) - 1, 1 - (1 << 49), 123_456_789_012):
        assert _c_limbs(x) == c_limbs(x)


def test_two_root_multiproof_walk_agrees_with_the_core() -> None:
    from perpnet.core.smt import MultiProof, root_from_multiproof
    from perpnet.stark.batch_statement import _multiproof_roots

    _, batch, proof = honest()
    ex = BatchProof.decode(proof).extras
    ids = [a.account_id for a in batch.diff.accounts]
    old = [keccak(a.old_leaf) if a.old_leaf else b"\x00" * 32 for a in batch.diff.accounts]
    new = [keccak(a.new_leaf) for a in batch.diff.accounts]
    mp = MultiProof.from_bytes(ex.accounts_proof)
    roots = _multiproof_roots(ex.accounts_proof, ids, old, new, "accounts")
    assert roots == (
        root_from_multiproof(dict(zip(ids, old, strict=True)), mp, mp.depth),
        root_from_multiproof(dict(zip(ids, new, strict=True)), mp, mp.depth),
    )
    assert roots == (ex.old_accounts_root, batch.public_inputs.accounts_root)
    # the empty-subtree shortcut gives exactly the hashes: all-empty old leaves
    empty = [b"\x00" * 32] * len(ids)
    assert _multiproof_roots(ex.accounts_proof, ids, empty, new, "accounts")[0] == (
        root_from_multiproof(dict(zip(ids, empty, strict=True)), mp, mp.depth)
    )
    with pytest.raises(StarkError):
        _multiproof_roots(ex.accounts_proof, ids[1:], old[1:], new[1:], "accounts")
    with pytest.raises(StarkError):
        _multiproof_roots(ex.accounts_proof + b"\x00" * 32, ids, old, new, "accounts")


def test_point_evaluation_agrees_with_arrays() -> None:
    from perpnet.stark import field as ff
    from perpnet.stark.air import FE, Frame
    from perpnet.stark.batch_air import _dot, _powers

    before, batch, proof = honest()
    pub = derive_public(batch.public_inputs, batch.diff, BatchProof.decode(proof).extras,
                        before.markets)  # fmt: skip
    air = BatchAir(pub)
    rng = np.random.default_rng(7)

    def r() -> FE:
        return FE.ext(rng.integers(0, ff.P, (4, 1)).astype(np.uint64))

    for _ in range(3):
        frame = Frame(
            cur=[r() for _ in range(air.width)],
            nxt=[r() for _ in range(air.width)],
            aux_cur=[r() for _ in range(air.aux_width)],
            aux_nxt=[r() for _ in range(air.aux_width)],
            challenges=[r() for _ in range(air.num_aux_challenges)],
        )
        ref = air._transition(frame)
        got = air.transition(frame)
        assert len(ref) == len(got)
        for x, y in zip(ref, got, strict=True):
            assert np.array_equal(x.as_ext()[:, :1], y.as_ext()[:, :1])
        ch = frame.challenges
        dm = _powers(ch[1], air.mem_slots)
        fin = ff.ext_prod((ch[0] - _dot(dm, pub.final.components())).as_ext())
        ini = ff.ext_prod((ch[0] - _dot(dm, pub.initial.components())).as_ext())
        assert np.array_equal(air.memory_target(ch), ff.ext_mul(fin, ff.ext_inv(ini)))
        assert np.array_equal(air.event_target(ch), _event_target_reference(air, ch))


def _event_target_reference(air: BatchAir, ch: Any) -> Any:
    """event_target as first written: FE arithmetic over the public event columns."""
    from perpnet.stark import field as ff
    from perpnet.stark.air import FE
    from perpnet.stark.batch_air import _dot, _powers, _v

    pub, m = air.public, len(air.public.markets)
    terms: list[list[int]] = []
    for j, (acct, amount) in enumerate(pub.deposits, 1):
        terms.append([1, j, acct, *_v(amount)] + [0] * 2 * m)
    for j, amount in enumerate(pub.withdrawals, 1):
        terms.append([2, j, 0, *_v(amount)] + [0] * 2 * m)
    for j, vec in enumerate(pub.funding, 1):
        terms.append([3, j, 0, 0, 0, 0, 0, *vec])
    for j, (acct, amount) in enumerate(pub.forced, 1):
        terms.append([4, j, acct, *_v(amount)] + [0] * 2 * m)
    assert terms
    de = _powers(ch[3], air.ev_slots)
    cols = np.array(terms, dtype=object).T
    comps = [FE.base(np.array([int(v) % ff.P for v in col], dtype=np.uint64)) for col in cols]
    prod = ff.ext_prod((ch[2] - _dot(de, comps)).as_ext())
    quiet = air.trace_length - 1 - len(terms)
    return ff.ext_mul(prod, ff.ext_pow(ch[2].as_ext()[:, :1], quiet))
