"""What a batch proof is about, derived by the verifier from public data alone.

`derive_public` is the only road from a batch's public inputs to the AIR's boundary
values, and prover and verifier both take it. It checks, natively:

- the public inputs bind the diff (diff_hash), the old root opens to the old
  accounts root, orders root and globals, and the new root to the new ones;
- every old leaf of the diff sits under the old accounts root and every new leaf
  under the new one (one SMT multiproof: siblings are the same before and after,
  since the diff holds every changed leaf); likewise for order fills;
- the globals move as the public data says: deposit ids consumed in order, totals
  of deposits and withdrawals, prices and funding indices replayed from the public
  tick list (funding deltas by the core's formula), new accounts numbered in order;
- every value lies within the AIR's bounds, so field arithmetic cannot wrap.

Then it builds the memory terms (old and new leaves) and event lists the AIR's
grand products must reach.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import sha3

from perpnet.core.accounts import FIRST_USER_ID
from perpnet.core.batch import PublicInputs, encode_diff
from perpnet.core.crypto import keccak
from perpnet.core.errors import CoreError
from perpnet.core.markets import MarketSet
from perpnet.core.smt import EMPTY_LEAF, MultiProof
from perpnet.core.state import Globals, StateDiff, order_leaf
from perpnet.stark.batch_air import BatchPublic, MemoryTerms
from perpnet.stark.batch_layout import (
    C_BITS,
    INDEX_WINDOW,
    MAX_ACCOUNT_ID,
    MAX_NONCE,
    MAX_TRACE,
    OFF_C,
    SMALL_BITS,
    V_BITS,
    MarketConstants,
    market_constants,
)
from perpnet.stark.batch_trace import TICK_FUNDING, TICK_ORACLE, Ledger
from perpnet.stark.errors import StarkVerificationError

END_OF_FUNDING = 0xFFFF
_keccak256 = sha3.keccak_256  # what perpnet.core.crypto.keccak wraps (one call less per hash)


@dataclass(frozen=True, slots=True)
class StatementExtras:
    """Public data beyond PublicInputs that the statement needs; each piece is checked."""

    old_accounts_root: bytes
    old_orders_root: bytes
    ticks: tuple[tuple[int, int, int], ...]
    last_versions: tuple[int, ...]
    trace_length: int
    accounts_proof: bytes
    orders_proof: bytes


def _fail(why: str) -> StarkVerificationError:
    return StarkVerificationError(f"batch statement: {why}")


def statement_bytes(
    pi: PublicInputs, diff: StateDiff, ex: StatementExtras, enc: bytes | None = None
) -> bytes:
    """Canonical bytes of the whole statement: the transcript absorbs them first.

    `enc` is `encode_diff(diff)` when the caller already has it."""
    parts = [pi.encode(), ex.old_accounts_root, ex.old_orders_root]
    parts.append(len(diff.old_globals).to_bytes(4, "big") + diff.old_globals)
    if enc is None:
        enc = encode_diff(diff)
    parts.append(len(enc).to_bytes(8, "big") + enc)
    parts.append(len(ex.ticks).to_bytes(4, "big"))
    parts += [k.to_bytes(1, "big") + m.to_bytes(2, "big") + v.to_bytes(16, "big", signed=True)
              for k, m, v in ex.ticks]  # fmt: skip
    parts.append(len(ex.last_versions).to_bytes(4, "big"))
    parts += [v.to_bytes(4, "big") for v in ex.last_versions]
    parts.append(ex.trace_length.to_bytes(4, "big"))
    for proof in (ex.accounts_proof, ex.orders_proof):
        parts.append(len(proof).to_bytes(4, "big") + proof)
    return b"".join(parts)


def fast_encode_diff(diff: StateDiff) -> bytes:
    """`encode_diff(diff)`, byte for byte, without the generic Writer; anything the fast
    path does not expect (a value out of range, a non-int) goes to the core encoder,
    which then encodes it or raises exactly as before."""
    try:
        parts = [len(diff.accounts).to_bytes(4, "big")]
        for a in diff.accounts:
            old, new = a.old_leaf, a.new_leaf
            parts += (
                a.account_id.to_bytes(4, "big"), len(old).to_bytes(2, "big"), old,
                len(new).to_bytes(2, "big"), new,
            )  # fmt: skip
        parts.append(len(diff.orders).to_bytes(4, "big"))
        for o in diff.orders:
            if len(o.order_hash) != 32:
                return encode_diff(diff)
            parts += (
                o.slot.to_bytes(4, "big"), o.order_hash,
                o.old_filled.to_bytes(16, "big"), o.new_filled.to_bytes(16, "big"),
            )  # fmt: skip
        return b"".join(parts)
    except (OverflowError, AttributeError, TypeError):
        return encode_diff(diff)


def _check_roots(pi: PublicInputs, diff: StateDiff, ex: StatementExtras, enc: bytes) -> None:
    """`enc` = encode_diff(diff), computed once by the caller."""
    if keccak(enc) != pi.diff_hash:
        raise _fail("diff_hash does not match the state diff")
    if diff.old_root != pi.old_root or diff.new_root != pi.new_root:
        raise _fail("state diff roots differ from the public inputs")
    if diff.new_globals != pi.globals:
        raise _fail("state diff globals differ from the public inputs")
    old = keccak(ex.old_accounts_root + ex.old_orders_root + keccak(diff.old_globals))
    if old != pi.old_root:
        raise _fail("old root does not open to the given accounts/orders roots and globals")
    ids = [a.account_id for a in diff.accounts]
    if ids != sorted(set(ids)):
        raise _fail("diff accounts are not strictly increasing")
    if ids:
        h = _keccak256
        old_leaves = [h(a.old_leaf).digest() if a.old_leaf else EMPTY_LEAF for a in diff.accounts]
        new_leaves = [h(a.new_leaf).digest() for a in diff.accounts]
        roots = _multiproof_roots(ex.accounts_proof, ids, old_leaves, new_leaves, "accounts")
        if roots[0] != ex.old_accounts_root:
            raise _fail("old accounts: leaves do not open to the root")
        if roots[1] != pi.accounts_root:
            raise _fail("new accounts: leaves do not open to the root")
    elif ex.accounts_proof:
        raise _fail("accounts multiproof without accounts")
    orders = sorted(diff.orders, key=lambda o: o.slot)
    slots = [o.slot for o in orders]
    if slots:
        if len(set(slots)) != len(slots):
            raise _fail("order slots repeat")
        old_orders = [order_leaf(o.order_hash, o.old_filled) if o.old_filled else EMPTY_LEAF
                      for o in orders]  # fmt: skip
        new_orders = [order_leaf(o.order_hash, o.new_filled) for o in orders]
        roots = _multiproof_roots(ex.orders_proof, slots, old_orders, new_orders, "orders")
        if roots[0] != ex.old_orders_root:
            raise _fail("old orders: leaves do not open to the root")
        if roots[1] != pi.orders_root:
            raise _fail("new orders: leaves do not open to the root")
    elif ex.orders_proof:
        raise _fail("orders multiproof without orders")


@functools.cache
def _empty_subtrees(depth: int) -> tuple[bytes, ...]:
    """Roots of the all-empty subtrees of height 0..depth (keccak of two children)."""
    out = [EMPTY_LEAF]
    for _ in range(depth):
        out.append(_keccak256(out[-1] + out[-1]).digest())
    return tuple(out)


def _multiproof_roots(
    raw: bytes, indices: list[int], old: list[bytes], new: list[bytes], what: str
) -> tuple[bytes, bytes]:
    """The roots the old and the new leaves (at the sorted distinct `indices`) imply
    with the one multiproof `raw`: a single walk, every sibling consumed exactly once
    and hashed with both sides (the siblings are untouched nodes, the same before and
    after). Same node order and sibling order as `smt.root_from_multiproof`."""
    try:
        proof = MultiProof.from_bytes(raw)  # canonical: sibling count matches the indices
    except CoreError as exc:
        raise _fail(f"{what}: {exc}") from None
    if list(proof.indices) != indices:
        raise _fail(f"{what}: multiproof indices differ from the diff")
    siblings = proof.siblings
    nsib = len(siblings)
    s = 0
    keys, olds, news = indices, old, new
    h = _keccak256
    empty = _empty_subtrees(proof.depth)
    for level in range(proof.depth):
        n = len(keys)
        up_k: list[int] = []
        up_o: list[bytes] = []
        up_n: list[bytes] = []
        k = 0
        while k < n:
            i = keys[k]
            if not i & 1 and k + 1 < n and keys[k + 1] == i + 1:
                a, b = olds[k], olds[k + 1]
                # two empty subtrees: their parent is the next level's empty subtree
                # (exactly the hash computed, precomputed: new order slots are empty before)
                up_o.append(empty[level + 1] if a == b == empty[level] else h(a + b).digest())
                up_n.append(h(news[k] + news[k + 1]).digest())
                k += 2
            else:
                if s == nsib:
                    raise _fail(f"{what}: multiproof has too few siblings")
                sib = siblings[s]
                s += 1
                if i & 1:
                    up_o.append(h(sib + olds[k]).digest())
                    up_n.append(h(sib + news[k]).digest())
                else:
                    up_o.append(h(olds[k] + sib).digest())
                    up_n.append(h(news[k] + sib).digest())
                k += 1
            up_k.append(i >> 1)
        keys, olds, news = up_k, up_o, up_n
    if s != nsib or len(keys) != 1:
        raise _fail(f"{what}: multiproof has too many siblings")
    return olds[0], news[0]


def _in_ticks(prices: dict[int, int], markets: MarketSet) -> tuple[int, ...]:
    """Oracle prices in ticks; the AIR supports on-tick prices below 2^20 ticks."""
    out = []
    for m in markets.markets:
        price = prices[m.market_id]
        if price % m.tick_size or not 0 <= price // m.tick_size < 1 << SMALL_BITS:
            raise _fail(f"market {m.market_id}: price {price} is off tick or beyond 2^20 ticks")
        out.append(price // m.tick_size)
    return tuple(out)


def _replay_ticks(
    ticks: Sequence[tuple[int, int, int]], g: Globals, markets: MarketSet
) -> list[tuple[int, ...]]:
    """Prices and indices after the public ticks; (indices, prices in ticks) after each tick."""
    prices, indices = dict(g.prices), dict(g.indices)
    out: list[tuple[int, ...]] = []
    rates: list[tuple[int, int]] = []
    for kind, market_id, value in ticks:
        if kind == TICK_ORACLE:
            if rates or market_id not in prices or value <= 0:
                raise _fail("malformed oracle tick")
            prices[market_id] = value
            out.append(tuple(indices[m.market_id] for m in markets.markets)
                       + _in_ticks(prices, markets))  # fmt: skip
        elif kind == TICK_FUNDING and market_id == END_OF_FUNDING:
            deltas = []
            for m, rate in rates:
                market = markets.get(m)
                if abs(rate) > market.max_funding_rate_ppb or prices.get(m, 0) <= 0:
                    raise _fail("funding rate above the clamp or without a price")
                deltas.append((m, market.funding_delta(rate, prices[m])))
            for m, delta in deltas:
                indices[m] += delta
            out.append(tuple(indices[m.market_id] for m in markets.markets)
                       + _in_ticks(prices, markets))  # fmt: skip
            rates = []
        elif kind == TICK_FUNDING and market_id in indices:
            if any(m == market_id for m, _ in rates):
                raise _fail("market repeated in a funding tick")
            rates.append((market_id, value))
        else:
            raise _fail("malformed tick")
    if rates:
        raise _fail("unterminated funding tick")
    g.prices, g.indices = prices, indices
    return out


_HEAD = 20 + 4 + 16 + 8 + 1
_POS = 2 + 16 * 3


@dataclass(frozen=True, slots=True)
class Leaf:
    """The fields of an account leaf the statement needs (`encode_account`'s layout)."""

    owner: bytes
    subaccount: int
    collateral: int
    nonce: int
    positions: dict[int, tuple[int, int]]  # market -> (size, funding index)


def decode_leaf(account_id: int, leaf: bytes) -> Leaf | None:
    """Exactly the leaves `decode_account` accepts, without building an Account (fast)."""
    if not leaf:
        return None
    k = (len(leaf) - _HEAD) // _POS
    if len(leaf) < _HEAD or len(leaf) != _HEAD + _POS * k or leaf[_HEAD - 1] != k:
        raise _fail(f"account {account_id}: bad leaf: wrong length")
    positions: dict[int, tuple[int, int]] = {}
    previous = -1
    for j in range(_HEAD, len(leaf), _POS):
        market = int.from_bytes(leaf[j : j + 2], "big")
        if market <= previous:
            raise _fail(f"account {account_id}: bad leaf: positions out of order")
        previous = market
        size = int.from_bytes(leaf[j + 2 : j + 18], "big", signed=True)
        positions[market] = (size, int.from_bytes(leaf[j + 18 : j + 34], "big", signed=True))
    return Leaf(
        leaf[:20],
        int.from_bytes(leaf[20:24], "big"),
        int.from_bytes(leaf[24:40], "big", signed=True),
        int.from_bytes(leaf[40:48], "big"),
        positions,
    )


def _market_slots(consts: Sequence[MarketConstants]) -> dict[int, int]:
    return {c.market_id: j for j, c in enumerate(consts)}


_FROM = int.from_bytes


def _leaf_ledger(
    account_id: int, leaf: bytes, consts: Sequence[MarketConstants], slots: dict[int, int]
) -> tuple[tuple[bytes, int], Ledger]:
    """The leaf's (owner, subaccount) and Ledger (lots in steps, per market of `consts`)
    in one pass, without an intermediate Leaf: exactly the leaves `decode_leaf` accepts,
    then the AIR's bounds (known markets, on-step sizes, collateral, nonce, lots)."""
    size_ = len(leaf)
    if size_ < _HEAD or size_ != _HEAD + _POS * leaf[_HEAD - 1]:
        raise _fail(f"account {account_id}: bad leaf: wrong length")
    m = len(consts)
    lots, funding = [0] * m, [0] * m
    previous = -1
    small = 1 << SMALL_BITS
    for j in range(_HEAD, size_, _POS):
        market = leaf[j] << 8 | leaf[j + 1]
        if market <= previous:
            raise _fail(f"account {account_id}: bad leaf: positions out of order")
        previous = market
        slot = slots.get(market)
        if slot is None:
            raise _fail(f"account {account_id}: position in an unknown market")
        size = _FROM(leaf[j + 2 : j + 18], "big", signed=True)
        step = consts[slot].step_size
        if size % step:
            raise _fail(f"account {account_id}: position off step")
        x = size // step
        if not -small < x < small:
            raise _fail(f"account {account_id}: position beyond the AIR's bounds")
        lots[slot] = x
        funding[slot] = _FROM(leaf[j + 18 : j + 34], "big", signed=True)
    collateral = _FROM(leaf[24:40], "big", signed=True)
    nonce = _FROM(leaf[40:48], "big")
    if not -(1 << C_BITS) < collateral < 1 << C_BITS or not 0 <= nonce < MAX_NONCE:
        raise _fail(f"account {account_id}: collateral or nonce beyond the AIR's bounds")
    return (leaf[:20], _FROM(leaf[20:24], "big")), Ledger(collateral, nonce, lots, funding)


def _c_limbs(collateral: int) -> list[int]:
    """`c_limbs`, unrolled (five 11-bit limbs of collateral + 2^49)."""
    v = collateral + OFF_C
    return [v & 2047, v >> 11 & 2047, v >> 22 & 2047, v >> 33 & 2047, v >> 44 & 2047]


def _terms(ids: Sequence[int], versions: Sequence[int], leds: Sequence[Ledger]) -> MemoryTerms:
    return MemoryTerms(
        acct=list(ids),
        version=list(versions),
        collateral=[_c_limbs(x.collateral) for x in leds],
        nonce=[x.nonce for x in leds],
        lots=[x.lots for x in leds],
        funding=[x.funding for x in leds],
    )


def derive_public(
    pi: PublicInputs, diff: StateDiff, ex: StatementExtras, markets: MarketSet
) -> BatchPublic:
    """Check the statement natively and derive the AIR's public values, or raise."""
    try:
        consts = market_constants(markets)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    enc = fast_encode_diff(diff)
    _check_roots(pi, diff, ex, enc)
    try:
        old_g = Globals.decode(diff.old_globals, markets)
        new_g = Globals.decode(pi.globals, markets)
    except (CoreError, TypeError):
        raise _fail("globals do not decode for these markets") from None
    if not 0 < ex.trace_length <= MAX_TRACE:
        raise _fail("trace length beyond the batch AIR's 2^20 rows")
    dep_ids = [d.deposit_id for d in pi.deposits]
    if dep_ids != list(range(old_g.next_deposit_id, old_g.next_deposit_id + len(dep_ids))):
        raise _fail("deposits are not consumed in order")
    if new_g.next_deposit_id != old_g.next_deposit_id + len(dep_ids):
        raise _fail("next deposit id does not advance by the deposits consumed")
    if new_g.total_deposited != old_g.total_deposited + sum(d.amount for d in pi.deposits):
        raise _fail("total deposited does not match the deposits")
    withdrawn = sum(w.amount for w in pi.withdrawals) + sum(f.served for f in pi.forced)
    if new_g.total_withdrawn != old_g.total_withdrawn + withdrawn:
        raise _fail("total withdrawn does not match the withdrawals and forced withdrawals")
    forced_ids = [f.request_id for f in pi.forced]
    if forced_ids != list(range(old_g.next_forced_id, old_g.next_forced_id + len(forced_ids))):
        raise _fail("forced requests are not served in order")
    if new_g.next_forced_id != old_g.next_forced_id + len(forced_ids):
        raise _fail("next forced request id does not advance by the requests served")
    if any(not 0 <= f.served <= f.requested for f in pi.forced):
        raise _fail("a forced withdrawal is served more than requested")
    amounts = [d.amount for d in pi.deposits] + [w.amount for w in pi.withdrawals]
    amounts += [f.served for f in pi.forced if f.served]
    if any(not 0 < a < 1 << V_BITS for a in amounts):
        raise _fail("a deposit or withdrawal amount is beyond the AIR's bounds")
    initial = [old_g.indices[c.market_id] for c in consts]
    initial_prices = _in_ticks(old_g.prices, markets)
    funding = _replay_ticks(ex.ticks, old_g, markets)
    if old_g.prices != new_g.prices or old_g.indices != new_g.indices:
        raise _fail("prices or funding indices differ from the replayed ticks")

    ids = [a.account_id for a in diff.accounts]
    if len(ex.last_versions) != len(ids) or any(i >= MAX_ACCOUNT_ID for i in ids):
        raise _fail("one last version per diff account, ids below 2^30")
    created = [a.account_id for a in diff.accounts if not a.old_leaf]
    if created != list(range(old_g.num_accounts, old_g.num_accounts + len(created))):
        raise _fail("new accounts are not numbered in order")
    if new_g.num_accounts != old_g.num_accounts + len(created):
        raise _fail("account count does not match the new accounts")
    if new_g.num_orders != old_g.num_orders + sum(1 for o in diff.orders if not o.old_filled):
        raise _fail("order count does not match the new order slots")
    old_l, new_l, owners = [], [], {}
    slots = _market_slots(consts)
    empty = Ledger(0, 0, [0] * len(consts), [0] * len(consts))
    for a in diff.accounts:
        aid = a.account_id
        if not a.new_leaf:
            raise _fail(f"account {aid} has no new leaf")
        key, after = _leaf_ledger(aid, a.new_leaf, consts, slots)
        if a.old_leaf:
            old_key, before = _leaf_ledger(aid, a.old_leaf, consts, slots)
            if old_key != key:
                raise _fail(f"account {aid} changed owner")
        else:
            before = empty
        owners[key] = aid
        old_l.append(before)
        new_l.append(after)
    deposits = []
    for d in pi.deposits:
        acct = owners.get((d.owner, d.subaccount))
        if acct is None:
            raise _fail(f"deposit {d.deposit_id} credits no account of the diff")
        deposits.append((acct, d.amount))
    forced = []
    for f in pi.forced:
        if not f.served:
            continue  # served nothing: no row (the account, if any, is only settled)
        acct = owners.get((f.owner, f.subaccount))
        if acct is None or acct < FIRST_USER_ID:
            raise _fail(f"forced request {f.request_id} is served from no user account")
        forced.append((acct, f.served))
    for i, c in enumerate(consts):
        seen = [initial[i], *(v[i] for v in funding)]
        seen += [x.funding[i] for x in old_l + new_l if x.lots[i]]
        if max(seen) - min(seen) >= INDEX_WINDOW:
            raise _fail(f"market {c.market_id}: funding indices span more than 2^29")
    return BatchPublic(
        statement=statement_bytes(pi, diff, ex, enc),
        trace_length=ex.trace_length,
        markets=consts,
        initial_indices=tuple(initial),
        initial_prices=initial_prices,
        initial=_terms(ids, [0] * len(ids), old_l),
        final=_terms(ids, ex.last_versions, new_l),
        deposits=tuple(deposits),
        withdrawals=tuple(w.amount for w in pi.withdrawals),
        funding=tuple(funding),
        forced=tuple(forced),
    )
