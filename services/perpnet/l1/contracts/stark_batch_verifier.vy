#pragma version ~=0.4.3
"""
@title The rollup's verifier for batch STARKs: the whole batch statement, on chain
@notice rollup.vy's IVerifier. `proof` is the calldata of the STARK verifier's
        verify_proof(statement, stark_proof) (perpnet.l1.stark_verifier.pack_batch_proof),
        where the statement is perpnet.stark.batch_statement.statement_bytes. Before it
        forwards those bytes unchanged, this contract checks what derive_public checks
        natively and the batch AIR's public module (stark_air_batch_public) does not:
        - the statement opens with the public inputs the rollup applied (their hash);
        - keccak(encoded diff) is the public inputs' diff hash, the old root opens to the
          statement's old accounts root, old orders root and old globals;
        - the account and the order multiproofs: old leaves reach the old roots, new
          leaves the public inputs' new roots, indices strictly increasing, equal to the
          diff's ids (order slots must come sorted, as the core emits them);
        - the globals move as the public data says: deposit and forced ids consumed in
          order, the totals, served <= requested, new accounts numbered in order, account
          and order counts, the replayed ticks reach the new prices and funding indices,
          and each market's funding indices stay within a 2^29 window.
        The evaluator then checks the leaves' bounds, the events' owners, the trace length
        and the grand products; the STARK verifier the proof. Everything is read from
        calldata; the one multiproof walk per tree keeps a stack of at most 33 nodes.
"""

import stark_lib as L
import stark_air_batch_markets as MK

MAX_PACKED: public(constant(uint256)) = 294_912  # rollup.MAX_PROOF - 100: a 1,024-tx statement (~156 KB) and its proof
M: constant(uint256) = MK.M
MAX_ENTRIES: constant(uint256) = L.MAX_PUBLIC // 8
DEPTH: constant(uint256) = 32
LEAF_MAX: constant(uint256) = 49 + 50 * M
INDEX_WINDOW: constant(int256) = 1 << 29
MASK128: constant(uint256) = (1 << 128) - 1
TICK_ORACLE: constant(uint256) = 1
TICK_FUNDING: constant(uint256) = 2
END_OF_FUNDING: constant(uint256) = 65535
ORDER_SIZE: constant(uint256) = 68  # slot u32, order hash, old filled u128, new filled u128
STATEMENT_AT: constant(uint256) = 100  # selector, two ABI offsets, the statement's length
VERIFY_PROOF: constant(bytes4) = method_id("verify_proof(bytes,bytes)", output_type=bytes4)

STARK: public(immutable(address))


# Where the statement's parts start, as calldata offsets, and how many entries each has.
# _layout checks that every part lies inside the statement, so later reads need no bounds.
struct Layout:
    s0: uint256  # the statement's first byte
    size: uint256
    pi_len: uint256  # the public inputs' encoding; its last 32 bytes are the diff hash
    deposits: uint256
    nd: uint256
    withdrawals: uint256
    nw: uint256
    forced: uint256
    nf: uint256
    old_roots: uint256  # old accounts root, old orders root
    old_globals: uint256
    enc: uint256  # the encoded diff
    enc_len: uint256
    na: uint256
    orders: uint256
    no: uint256
    ticks: uint256
    nt: uint256
    acc_proof: uint256
    acc_proof_len: uint256
    ord_proof: uint256
    ord_proof_len: uint256


@deploy
def __init__(stark_verifier: address):
    STARK = stark_verifier


# ------------------------------------------------------------------ reading


@internal
@view
def _u(at: uint256, k: uint256) -> uint256:
    """The big-endian unsigned field of k <= 32 bytes at calldata offset at (>= 32), read
    as the calldata word that ends with it."""
    return convert(slice(msg.data, at + k - 32, 32), uint256) & (max_value(uint256) >> (256 - 8 * k))


@internal
@view
def _i128(at: uint256) -> int256:
    return convert(convert(self._u(at, 16) << 128, bytes32), int256) >> 128


@internal
@view
def _b32(at: uint256) -> bytes32:
    return convert(slice(msg.data, at, 32), bytes32)


@internal
@view
def _f(s0: uint256, size: uint256, o: uint256, k: uint256) -> uint256:
    """The field of k bytes at offset o of the statement, which must hold it."""
    assert o + k <= size, "statement truncated"
    return self._u(s0 + o, k)


@internal
@pure
def _slot(market: uint256) -> uint256:
    """The market's position in the market set, or M if unknown."""
    if MK.IDS_ARE_SLOTS:
        return min(market, M)
    for i: uint256 in range(M):
        if MK.IDS[i] == market:
            return i
    return M


@internal
@view
def _layout(s0: uint256, size: uint256) -> Layout:
    """statement_bytes' layout; every part inside the statement and nothing after it."""
    assert self._f(s0, size, 104, 2) == MK.GLOBALS_LEN, "new globals for other markets"
    o: uint256 = 106 + MK.GLOBALS_LEN
    nd: uint256 = self._f(s0, size, o, 4)
    deposits: uint256 = o + 4
    o = deposits + 48 * nd
    nw: uint256 = self._f(s0, size, o, 4)
    withdrawals: uint256 = o + 4
    o = withdrawals + 36 * nw
    nf: uint256 = self._f(s0, size, o, 4)
    forced: uint256 = o + 4
    pi_len: uint256 = forced + 84 * nf + 32
    o = pi_len + 64  # old accounts root, old orders root
    assert self._f(s0, size, o, 4) == MK.GLOBALS_LEN, "old globals for other markets"
    old_globals: uint256 = o + 4
    o = old_globals + MK.GLOBALS_LEN
    enc_len: uint256 = self._f(s0, size, o, 8)
    enc: uint256 = o + 8
    end: uint256 = enc + enc_len
    assert end <= size, "statement truncated"
    na: uint256 = self._f(s0, size, enc, 4)
    assert na <= MAX_ENTRIES, "diff truncated"
    o = enc + 4
    for _: uint256 in range(na, bound=MAX_ENTRIES):
        assert o + 8 <= end, "diff truncated"  # then the words read below lie in the calldata
        old_len: uint256 = (convert(slice(msg.data, s0 + o, 32), uint256) >> 208) & 65535
        assert o + 8 + old_len <= end, "diff truncated"
        o += 8 + old_len + (convert(slice(msg.data, s0 + o + 6 + old_len, 32), uint256) >> 240)
        assert o <= end, "diff truncated"
    no: uint256 = self._f(s0, size, o, 4)
    orders: uint256 = o + 4
    assert orders + ORDER_SIZE * no == end, "diff length does not match its entries"
    nt: uint256 = self._f(s0, size, end, 4)
    ticks: uint256 = end + 4
    o = ticks + 19 * nt
    assert self._f(s0, size, o, 4) == na, "one last version per diff account"
    o += 8 + 4 * na  # versions, trace length
    acc_proof_len: uint256 = self._f(s0, size, o, 4)
    acc_proof: uint256 = o + 4
    o = acc_proof + acc_proof_len
    ord_proof_len: uint256 = self._f(s0, size, o, 4)
    ord_proof: uint256 = o + 4
    assert ord_proof + ord_proof_len == size, "statement length does not match its parts"
    return Layout(
        s0=s0,
        size=size,
        pi_len=pi_len,
        deposits=s0 + deposits,
        nd=nd,
        withdrawals=s0 + withdrawals,
        nw=nw,
        forced=s0 + forced,
        nf=nf,
        old_roots=s0 + pi_len,
        old_globals=s0 + old_globals,
        enc=s0 + enc,
        enc_len=enc_len,
        na=na,
        orders=s0 + orders,
        no=no,
        ticks=s0 + ticks,
        nt=nt,
        acc_proof=s0 + acc_proof,
        acc_proof_len=acc_proof_len,
        ord_proof=s0 + ord_proof,
        ord_proof_len=ord_proof_len,
    )


# ------------------------------------------------------------------ multiproofs


@internal
@view
def _leaf_hash(at: uint256, n: uint256) -> bytes32:
    """keccak of the n-byte account leaf at calldata offset at (inside the calldata)."""
    assert n <= LEAF_MAX, "bad leaf: wrong length"
    s: uint256 = min(at, len(msg.data) - LEAF_MAX)
    buf: Bytes[LEAF_MAX] = slice(msg.data, s, LEAF_MAX)
    return keccak256(slice(buf, at - s, n))


# The multiproof walk reads calldata words in place in its hot loops: a field of k bytes
# at `at` is word(at) >> (256 - 8k). Every such field lies inside the statement (checked
# by _layout), which the stark proof's length word follows: never past the calldata.


@internal
@view
def _level_starts(mp: uint256, n: uint256, first: uint256, orders: bool) -> uint256[DEPTH + 1]:
    """Check the multiproof's header and indices against the diff's ids; where each
    level's siblings start (the canonical order is by height, then node index). Level h
    holds 1 + #{k: msb(key_k ^ key_k-1) >= h} nodes, and 2 * nodes(h+1) - nodes(h) of
    their siblings are missing."""
    assert self._u(mp, 2) == DEPTH, "multiproof depth is not the tree's"
    assert self._u(mp + 2, 4) == n, "multiproof indices differ from the diff"
    hist: uint256[DEPTH] = empty(uint256[DEPTH])
    e: uint256 = first
    previous: uint256 = 0
    keys: uint256 = 0  # the calldata word of the keys from k on, one read per 8 keys
    for k: uint256 in range(n, bound=MAX_ENTRIES):
        if k % 8 == 0:
            keys = convert(slice(msg.data, mp + 6 + 4 * k, 32), uint256)
        else:
            keys <<= 32
        key: uint256 = keys >> 224
        w: uint256 = convert(slice(msg.data, e, 32), uint256)  # id u32, (account) old length u16
        assert key == w >> 224, "multiproof indices differ from the diff"
        if orders:
            e += ORDER_SIZE
        else:
            e += 8 + ((w >> 208) & 65535)
            e += convert(slice(msg.data, e - 2, 32), uint256) >> 240
        if k > 0:
            assert key > previous, "diff ids are not strictly increasing"
            x: uint256 = key ^ previous  # its highest set bit, by halving
            d: uint256 = 0
            if x >> 16 != 0:
                x >>= 16
                d += 16
            if x >> 8 != 0:
                x >>= 8
                d += 8
            if x >> 4 != 0:
                x >>= 4
                d += 4
            if x >> 2 != 0:
                x >>= 2
                d += 2
            if x >> 1 != 0:
                d += 1
            hist[d] += 1
        previous = key
    nodes: uint256[DEPTH + 1] = empty(uint256[DEPTH + 1])
    nodes[DEPTH] = 1
    for i: uint256 in range(DEPTH):
        h: uint256 = DEPTH - 1 - i
        nodes[h] = nodes[h + 1] + hist[h]
    starts: uint256[DEPTH + 1] = empty(uint256[DEPTH + 1])
    for h: uint256 in range(DEPTH):
        starts[h + 1] = starts[h] + 2 * nodes[h + 1] - nodes[h]
    assert self._u(mp + 6 + 4 * n, 4) == starts[DEPTH], "multiproof sibling count does not match its indices"
    return starts


@internal
@view
def _roots(mp: uint256, mp_len: uint256, n: uint256, first: uint256, orders: bool) -> (bytes32, bytes32, uint256):
    """The roots the old and the new leaves imply with the one multiproof at mp, and how
    many order entries had no old leaf (0 for accounts): one left-to-right walk; a node is lifted until its
    parent is the next key's ancestor, then waits on the stack for its right sibling
    (that ancestor's other child)."""
    assert mp_len >= 10 + 4 * n and mp_len == 10 + 4 * n + 32 * self._u(mp + 6 + 4 * n, 4), "multiproof length does not match its sibling count"
    pos: uint256[DEPTH + 1] = self._level_starts(mp, n, first, orders)
    ends: uint256[DEPTH + 1] = pos
    sib_at: uint256 = mp + 10 + 4 * n
    stack_h: uint256[DEPTH + 1] = empty(uint256[DEPTH + 1])
    stack_old: bytes32[DEPTH + 1] = empty(bytes32[DEPTH + 1])
    stack_new: bytes32[DEPTH + 1] = empty(bytes32[DEPTH + 1])
    sp: uint256 = 0
    e: uint256 = first
    fresh: uint256 = 0
    a: bytes32 = empty(bytes32)
    b: bytes32 = empty(bytes32)
    keys: uint256 = convert(slice(msg.data, mp + 6, 32), uint256)  # as in _level_starts
    key: uint256 = keys >> 224
    for k: uint256 in range(n, bound=MAX_ENTRIES):
        i: uint256 = key  # i and nxt are shifted as the walk lifts the node
        nxt: uint256 = 1 << DEPTH  # no next key: lift to the root
        if k + 1 < n:
            if (k + 1) % 8 == 0:
                keys = convert(slice(msg.data, mp + 10 + 4 * k, 32), uint256)
            else:
                keys <<= 32
            key = keys >> 224
            nxt = key
        # the entry's old leaf hash (0 if empty) and new leaf hash
        if orders:  # slot u32, order hash, old filled u128, new filled u128
            a = empty(bytes32)
            if convert(slice(msg.data, e + 36, 32), uint256) >> 128 != 0:
                a = keccak256(slice(msg.data, e + 4, 48))
            else:
                fresh += 1
            b = keccak256(concat(slice(msg.data, e + 4, 32), slice(msg.data, e + 52, 16)))
            e += ORDER_SIZE
        else:  # account id u32, old leaf (u16 length), new leaf (u16 length)
            old_len: uint256 = (convert(slice(msg.data, e, 32), uint256) >> 208) & 65535
            new_len: uint256 = convert(slice(msg.data, e + 6 + old_len, 32), uint256) >> 240
            assert new_len > 0, "diff account has no new leaf"
            a = empty(bytes32)
            if old_len > 0:
                a = self._leaf_hash(e + 6, old_len)
            b = self._leaf_hash(e + 8 + old_len, new_len)
            e += 8 + old_len + new_len
        h: uint256 = 0
        for _: uint256 in range(DEPTH):
            if i >> 1 == nxt >> 1:
                break
            waiting: bool = False
            if i & 1 == 1 and sp > 0:
                waiting = stack_h[sp - 1] == h
            if waiting:  # the left sibling, lifted from earlier keys
                sp -= 1
                a = keccak256(concat(stack_old[sp], a))
                b = keccak256(concat(stack_new[sp], b))
            else:
                sib: bytes32 = convert(slice(msg.data, sib_at + 32 * pos[h], 32), bytes32)
                pos[h] += 1
                if i & 1 == 1:
                    a = keccak256(concat(sib, a))
                    b = keccak256(concat(sib, b))
                else:
                    a = keccak256(concat(a, sib))
                    b = keccak256(concat(b, sib))
            i >>= 1
            nxt >>= 1
            h += 1
        if k + 1 < n:
            assert sp <= DEPTH, "multiproof walk out of step"
            stack_h[sp] = h
            stack_old[sp] = a
            stack_new[sp] = b
            sp += 1
    for h: uint256 in range(DEPTH):
        assert pos[h] == ends[h + 1], "multiproof walk out of step"
    return a, b, fresh


@internal
@view
def _check_roots(y: Layout) -> uint256:
    """_check_roots of batch_statement, less the diff hash (checked by the caller); the
    number of new order slots (order entries with no old leaf)."""
    old_root: bytes32 = keccak256(
        concat(
            slice(msg.data, y.old_roots, 64),
            keccak256(slice(msg.data, y.old_globals, MK.GLOBALS_LEN)),
        )
    )
    assert old_root == self._b32(y.s0 + 8), "old root does not open to the given accounts/orders roots and globals"
    old: bytes32 = empty(bytes32)
    new: bytes32 = empty(bytes32)
    fresh: uint256 = 0
    if y.na > 0:
        old, new, fresh = self._roots(y.acc_proof, y.acc_proof_len, y.na, y.enc + 4, False)
        assert old == self._b32(y.old_roots), "old accounts: leaves do not open to the root"
        assert new == self._b32(y.s0 + 40), "new accounts: leaves do not open to the root"
    else:
        assert y.acc_proof_len == 0, "accounts multiproof without accounts"
    if y.no > 0:
        old, new, fresh = self._roots(y.ord_proof, y.ord_proof_len, y.no, y.orders, True)
        assert old == self._b32(y.old_roots + 32), "old orders: leaves do not open to the root"
        assert new == self._b32(y.s0 + 72), "new orders: leaves do not open to the root"
    else:
        assert y.ord_proof_len == 0, "orders multiproof without orders"
    return fresh


# ------------------------------------------------------------------ globals


@internal
@view
def _check_counters(y: Layout):
    """Deposit and forced ids consumed in order, served <= requested, and the totals."""
    og: uint256 = y.old_globals
    ng: uint256 = y.s0 + 106
    for i: uint256 in range(M):
        assert self._u(og + 80 + 42 * i, 2) == MK.IDS[i], "old globals for other markets"
        assert self._u(ng + 80 + 42 * i, 2) == MK.IDS[i], "new globals for other markets"
    first: uint256 = self._u(og + 8, 8)
    total: uint256 = 0
    for j: uint256 in range(y.nd, bound=MAX_ENTRIES):
        at: uint256 = y.deposits + 48 * j
        assert self._u(at, 8) == first + j, "deposits are not consumed in order"
        total += self._u(at + 32, 16)
    assert self._u(ng + 8, 8) == first + y.nd, "next deposit id does not advance by the deposits consumed"
    assert self._u(ng + 48, 16) == self._u(og + 48, 16) + total, "total deposited does not match the deposits"
    total = 0
    for j: uint256 in range(y.nw, bound=MAX_ENTRIES):
        total += self._u(y.withdrawals + 36 * j + 20, 16)
    first = self._u(og + 16, 8)
    for j: uint256 in range(y.nf, bound=MAX_ENTRIES):
        at: uint256 = y.forced + 84 * j
        assert self._u(at, 8) == first + j, "forced requests are not served in order"
        served: uint256 = self._u(at + 68, 16)
        assert served <= self._u(at + 32, 16), "a forced withdrawal is served more than requested"
        total += served
    assert self._u(ng + 16, 8) == first + y.nf, "next forced request id does not advance by the requests served"
    assert self._u(ng + 64, 16) == self._u(og + 64, 16) + total, "total withdrawn does not match the withdrawals and forced withdrawals"


@internal
@view
def _replay(y: Layout) -> (int256[M], int256[M]):
    """Replay the ticks from the old prices and indices (batch_statement._replay_ticks):
    they must reach the new globals'. Returns each market's lowest and highest index
    (initial, and after every oracle tick and funding tick)."""
    prices: uint256[M] = empty(uint256[M])
    idx: int256[M] = empty(int256[M])
    for i: uint256 in range(M):
        g: uint256 = y.old_globals + 80 + 42 * i  # market u16, price u128, time u64, index i128
        prices[i] = self._u(g + 2, 16)
        idx[i] = self._i128(g + 26)
    lo: int256[M] = idx
    hi: int256[M] = idx
    rates: int256[M] = empty(int256[M])
    has_rate: bool[M] = empty(bool[M])
    pending: bool = False
    for t: uint256 in range(y.nt, bound=MAX_ENTRIES):
        at: uint256 = y.ticks + 19 * t  # kind u8, market u16, value i128
        kind: uint256 = self._u(at, 1)
        market: uint256 = self._u(at + 1, 2)
        value: int256 = self._i128(at + 3)
        slot: uint256 = self._slot(market)
        if kind == TICK_ORACLE:
            assert not pending and slot < M and value > 0, "malformed oracle tick"
            prices[slot] = convert(value, uint256)
        elif kind == TICK_FUNDING and market == END_OF_FUNDING:
            for i: uint256 in range(M):
                if has_rate[i]:
                    assert abs(rates[i]) <= MK.MAX_RATE[i] and prices[i] > 0, "funding rate above the clamp or without a price"
                    idx[i] += rates[i] * convert(prices[i], int256) * MK.STEP[i] // MK.FUNDING_DEN[i]
            rates = empty(int256[M])
            has_rate = empty(bool[M])
            pending = False
        elif kind == TICK_FUNDING and slot < M:
            assert not has_rate[slot], "market repeated in a funding tick"
            has_rate[slot] = True
            rates[slot] = value
            pending = True
            continue
        else:
            raise "malformed tick"
        for i: uint256 in range(M):
            lo[i] = min(lo[i], idx[i])
            hi[i] = max(hi[i], idx[i])
    assert not pending, "unterminated funding tick"
    for i: uint256 in range(M):
        g: uint256 = y.s0 + 106 + 80 + 42 * i
        assert prices[i] == self._u(g + 2, 16) and idx[i] == self._i128(g + 26), "prices or funding indices differ from the replayed ticks"
    return lo, hi


@internal
@view
def _check_accounts(y: Layout, lo_in: int256[M], hi_in: int256[M], fresh: uint256):
    """New accounts numbered in order, owners unchanged, the account and order counts
    (`fresh`: the new order slots _roots counted), and the funding-index window over
    the leaves' open positions. A malformed leaf is
    skipped here: the evaluator rejects it."""
    lo: int256[M] = lo_in
    hi: int256[M] = hi_in
    og: uint256 = y.old_globals
    ng: uint256 = y.s0 + 106
    created: uint256 = 0
    first: uint256 = self._u(og + 24, 8)
    e: uint256 = y.enc + 4
    for _: uint256 in range(y.na, bound=MAX_ENTRIES):
        w: uint256 = convert(slice(msg.data, e, 32), uint256)  # id u32, old length u16, ...
        old_len: uint256 = (w >> 208) & 65535
        new_at: uint256 = e + 8 + old_len
        new_len: uint256 = convert(slice(msg.data, new_at - 2, 32), uint256) >> 240
        if old_len == 0:
            assert w >> 224 == first + created, "new accounts are not numbered in order"
            created += 1
        else:  # owner and subaccount: the leaves' first 24 bytes
            old_key: uint256 = convert(slice(msg.data, e + 6, 32), uint256) >> 64
            assert old_key == convert(slice(msg.data, new_at, 32), uint256) >> 64, "account changed owner"
        for side: uint256 in range(2):
            at: uint256 = e + 6
            size: uint256 = old_len
            if side == 1:
                at = new_at
                size = new_len
            count: uint256 = convert(slice(msg.data, at + 48, 32), uint256) >> 248
            if size < 49 or count > M or size != 49 + 50 * count:
                continue
            for j: uint256 in range(count, bound=M):
                p: uint256 = at + 49 + 50 * j  # market u16, size i128, funding index i128, cost
                pw: uint256 = convert(slice(msg.data, p, 32), uint256)
                slot: uint256 = min(pw >> 240, M)
                if not MK.IDS_ARE_SLOTS:
                    slot = self._slot(pw >> 240)
                if slot < M and (pw >> 112) & MASK128 != 0:
                    f: int256 = convert(convert(slice(msg.data, p + 18, 32), bytes32), int256) >> 128
                    lo[slot] = min(lo[slot], f)
                    hi[slot] = max(hi[slot], f)
        e = new_at + new_len
    for i: uint256 in range(M):
        assert hi[i] - lo[i] < INDEX_WINDOW, "funding indices span more than 2^29"
    assert self._u(ng + 24, 8) == first + created, "account count does not match the new accounts"
    assert self._u(ng + 32, 8) == self._u(og + 32, 8) + fresh, "order count does not match the new order slots"


# ------------------------------------------------------------------ entry point


@external
@view
def verify(public_inputs_hash: bytes32, proof: Bytes[MAX_PACKED]) -> bool:
    """True if `proof` proves the batch whose public inputs hash to public_inputs_hash;
    reverts with the reason otherwise."""
    p0: uint256 = convert(slice(msg.data, 36, 32), uint256) + 36  # the proof's bytes
    assert len(proof) >= STATEMENT_AT, "packed proof truncated"
    assert convert(slice(msg.data, p0, 4), bytes4) == VERIFY_PROOF, "not a packed batch proof"
    assert convert(slice(msg.data, p0 + 4, 32), uint256) == 64, "not a packed batch proof"
    size: uint256 = convert(slice(msg.data, p0 + 68, 32), uint256)
    assert size <= L.MAX_PUBLIC and STATEMENT_AT + size <= len(proof), "packed proof truncated"
    y: Layout = self._layout(p0 + STATEMENT_AT, size)
    # Steps 0 and 1 hash the public inputs' prefix and the diff (one buffer for both);
    # step 2 checks the rest natively, then asks the STARK verifier. Its answer's buffer
    # comes first in the text so that it is laid out below the hash buffer (Vyper lays
    # out memory in text order, and memory is paid up to the highest byte touched).
    for step: uint256 in range(3):
        if step == 2:
            fresh: uint256 = self._check_roots(y)
            self._check_counters(y)
            lo: int256[M] = empty(int256[M])
            hi: int256[M] = empty(int256[M])
            lo, hi = self._replay(y)
            self._check_accounts(y, lo, hi, fresh)
            ok: Bytes[32] = raw_call(STARK, proof, max_outsize=32, is_static_call=True)
            assert len(ok) == 32 and convert(ok, uint256) == 1, "the STARK verifier did not accept"
            break
        at: uint256 = STATEMENT_AT
        n: uint256 = y.pi_len
        want: bytes32 = public_inputs_hash
        if step == 1:
            at += y.enc - y.s0
            n = y.enc_len
            want = self._b32(y.s0 + y.pi_len - 32)
        h: bytes32 = keccak256(slice(proof, at, n))
        assert step == 1 or h == want, "the statement is for other public inputs"
        assert h == want, "diff_hash does not match the state diff"
    return True
