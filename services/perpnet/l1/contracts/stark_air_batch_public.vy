#pragma version ~=0.4.3
"""
@title The batch AIR's public input on chain (a module of stark_air_batch, hand-written)
@notice Parses the statement bytes (perpnet.stark.batch_statement.statement_bytes) straight
        from calldata and computes what BatchAir.boundaries needs of them: the trace
        length, the event counts, the initial funding indices and prices in ticks, and the
        two public grand products (BatchAir.memory_target, BatchAir.event_target) over the
        diff's leaves, the deposits, withdrawals, replayed ticks and forced withdrawals.
        Market constants come from the generated stark_air_batch_markets module.
        The statement's other checks (diff hash, roots, multiproofs, globals moves) are
        batch_statement._check_roots / derive_public's and are not repeated here.
"""

import stark_lib as L
import stark_air_batch_markets as MK

M: constant(uint256) = MK.M
MAX_ENTRIES: constant(uint256) = 1 << 20
K: constant(uint256) = MK.SLOTS
SMALL: constant(int256) = 1 << 20
R128: constant(uint256) = (1 << 128) % L.P
P_SIGNED: constant(int256) = 2013265921
TAG_DEPOSIT: constant(uint256) = 1
TAG_WITHDRAWAL: constant(uint256) = 2
TAG_FUNDING: constant(uint256) = 3
TAG_FORCED: constant(uint256) = 4
TICK_ORACLE: constant(uint256) = 1
TICK_FUNDING: constant(uint256) = 2
END_OF_FUNDING: constant(uint256) = 65535
FIRST_USER_ID: constant(uint256) = 2


# Where the statement's variable-length parts start (offsets into the public input,
# whose bytes are calldata from `start`, `length` long) and how many entries each has.
struct Statement:
    start: uint256
    length: uint256
    n: uint256
    deposits_at: uint256
    num_deposits: uint256
    withdrawals_at: uint256
    num_withdrawals: uint256
    forced_at: uint256
    num_forced: uint256
    old_globals_at: uint256
    accounts_at: uint256
    num_accounts: uint256
    diff_end: uint256
    ticks_at: uint256
    num_ticks: uint256
    versions_at: uint256


@internal
@view
def word(b: uint256, end: uint256) -> uint256:
    """The 32 bytes of the public input that end at its offset `end` (so never past
    its end), b = the input's calldata offset - 32: a field of k bytes ending there is
    the word's low 8k bits."""
    return convert(slice(msg.data, b + end, 32), uint256)


@internal
@view
def rd(s: Statement, o: uint256, k: uint256) -> uint256:
    """The big-endian unsigned integer of bytes o..o+k (k <= 32) of the public input."""
    assert o + k <= s.length, "public input truncated"
    return self.word(s.start - 32, o + k) & ((1 << (8 * k)) - 1)


@internal
@pure
def signed(v: uint256, bits: uint256) -> int256:
    """The two's complement value of the low `bits` bits of v."""
    x: uint256 = v & ((1 << bits) - 1)
    if x >> (bits - 1) == 1:
        return convert(x, int256) - convert(1 << bits, int256)
    return convert(x, int256)


@internal
@pure
def mod_p(x: int256) -> uint256:
    r: int256 = x % convert(L.P, int256)
    if r < 0:
        r += convert(L.P, int256)
    return convert(r, uint256)


@internal
@view
def parse(arg: uint256) -> Statement:
    """The statement layout of the `bytes` argument whose ABI head is word `arg`."""
    at: uint256 = convert(slice(msg.data, 4 + 32 * arg, 32), uint256) + 4
    s: Statement = empty(Statement)
    s.length = convert(slice(msg.data, at, 32), uint256)
    s.start = at + 32
    o: uint256 = 104  # batch id, old root, accounts root, orders root
    o += 2 + self.rd(s, o, 2)  # new globals
    s.num_deposits = self.rd(s, o, 4)
    s.deposits_at = o + 4
    o = s.deposits_at + 48 * s.num_deposits
    s.num_withdrawals = self.rd(s, o, 4)
    s.withdrawals_at = o + 4
    o = s.withdrawals_at + 36 * s.num_withdrawals
    s.num_forced = self.rd(s, o, 4)
    s.forced_at = o + 4
    o = s.forced_at + 84 * s.num_forced + 32 + 64  # diff hash, old accounts/orders roots
    assert self.rd(s, o, 4) == MK.GLOBALS_LEN, "old globals for other markets"
    s.old_globals_at = o + 4
    o = s.old_globals_at + MK.GLOBALS_LEN
    diff_len: uint256 = self.rd(s, o, 8)
    s.num_accounts = self.rd(s, o + 8, 4)
    s.accounts_at = o + 12
    o += 8 + diff_len
    s.diff_end = o
    s.num_ticks = self.rd(s, o, 4)
    s.ticks_at = o + 4
    o = s.ticks_at + 19 * s.num_ticks
    assert self.rd(s, o, 4) == s.num_accounts, "one last version per diff account"
    s.versions_at = o + 4
    o = s.versions_at + 4 * s.num_accounts
    s.n = self.rd(s, o, 4)
    o += 4
    o += 4 + self.rd(s, o, 4)  # accounts multiproof
    o += 4 + self.rd(s, o, 4)  # orders multiproof
    assert o == s.length, "public input has trailing bytes"
    return s


@internal
@pure
def log2_exact(n: uint256) -> uint256:
    """log2 of a power of two in [8, 2^20] (the batch AIR's trace lengths), else revert."""
    for i: uint256 in range(3, 21):
        if n == 1 << i:
            return i
    raise "trace length must be a power of two in [8, 2^20]"


@internal
@pure
def powers(x: uint256) -> uint256[K]:
    out: uint256[K] = empty(uint256[K])
    acc: uint256 = 1
    for j: uint256 in range(K):
        out[j] = acc
        acc = L.ext_mul(acc, x)
    return out


@internal
@pure
def ext_pow(x: uint256, e: uint256) -> uint256:
    out: uint256 = 1
    b: uint256 = x
    k: uint256 = e
    for _: uint256 in range(256):
        if k == 0:
            break
        if k & 1 == 1:
            out = L.ext_mul(out, b)
        k >>= 1
        if k != 0:
            b = L.ext_mul(b, b)
    return out


@internal
@pure
def slot_of(market: uint256) -> uint256:
    """The market's position in the market set, or M if unknown."""
    if MK.IDS_ARE_SLOTS:  # ids 0..M-1, the usual case
        return min(market, M)
    for i: uint256 in range(M):
        if MK.IDS[i] == market:
            return i
    return M


@internal
@pure
def in_ticks(price: uint256, i: uint256) -> uint256:
    t: uint256 = MK.TICK[i]
    assert price % t == 0 and price // t < 1 << 20, "price off tick or beyond 2^20 ticks"
    return price // t


# ------------------------------------------------------------------ memory


@internal
@view
def memory_target(s: Statement, gamma: uint256, delta: uint256) -> uint256:
    """BatchAir.memory_target: Π fp(final leaves) / Π fp(initial leaves), fp(c) =
    γ − Σ_j δ^j·c_j over the memory tuple (MemoryTerms.matrix): account, version,
    collateral limbs, nonce, 0, lots and funding per market; an empty (old) leaf is
    the empty ledger. Each lane sum adds at most three products < 2^62 to a reduced
    word, so it stays < 2^64. Fields are read as the calldata word ending at the
    field's end (b = start - 32). One loop body, few internal calls: this runs twice
    per diff account."""
    if s.num_accounts == 0:
        return 1
    b: uint256 = s.start - 32
    dm: uint256[K] = self.powers(delta)
    steps: int256[M] = MK.STEP  # one copy: indexing a constant array rebuilds it
    fin: uint256 = 1
    ini: uint256 = 1
    o: uint256 = s.accounts_at
    for k: uint256 in range(s.num_accounts, bound=MAX_ENTRIES):
        w: uint256 = convert(slice(msg.data, b + o + 6, 32), uint256)  # id u32, old length u16
        aid: uint256 = (w >> 16) & L.M32
        assert aid < 1 << 30, "account ids below 2^30"
        at: uint256 = o + 6
        size: uint256 = w & 65535
        new_at: uint256 = at + size + 2
        assert new_at <= s.diff_end, "diff truncated"
        new_len: uint256 = convert(slice(msg.data, b + new_at, 32), uint256) & 65535
        assert new_len > 0, "diff account has no new leaf"
        o = new_at + new_len
        assert o <= s.diff_end, "diff truncated"
        version: uint256 = convert(slice(msg.data, b + s.versions_at + 4 * k + 4, 32), uint256) & L.M32
        for side: uint256 in range(2):
            if side == 1:
                at = new_at
                size = new_len
            v: uint256 = 1 << 49  # collateral + 2^49, split into 11-bit limbs
            nonce: uint256 = 0
            count: uint256 = 0
            if size > 0:
                # ... owner, subaccount u32, collateral i128, nonce u64, position count u8
                head: uint256 = convert(slice(msg.data, b + at + 49, 32), uint256)
                count = head & 255
                assert size >= 49 and count <= M and size == 49 + 50 * count, "bad leaf: wrong length"
                # in (0, 2^50) exactly when -2^49 < collateral < 2^49 (mod 2^128)
                v = unsafe_add(head >> 72, 1 << 49) & L.M128
                assert v > 0 and v < 1 << 50, "collateral beyond the AIR's bounds"
                nonce = (head >> 8) & L.M64
                assert nonce < 1 << 30, "nonce beyond the AIR's bounds"
            acc: uint256 = L.reduce_lanes(
                unsafe_add(
                    unsafe_add(unsafe_mul(dm[0], aid), unsafe_mul(dm[1], version % L.P * side)),
                    unsafe_add(unsafe_mul(dm[2], v & 2047), unsafe_mul(dm[3], (v >> 11) & 2047)),
                )
            )
            acc = L.reduce_lanes(
                unsafe_add(
                    unsafe_add(acc, unsafe_mul(dm[4], (v >> 22) & 2047)),
                    unsafe_add(unsafe_mul(dm[5], (v >> 33) & 2047), unsafe_mul(dm[6], v >> 44)),
                )
            )
            acc = unsafe_add(acc, unsafe_mul(dm[7], nonce))
            previous: uint256 = 0
            for j: uint256 in range(count, bound=M):
                p: uint256 = unsafe_add(unsafe_add(b, at), unsafe_add(49, unsafe_mul(50, j)))
                pw: uint256 = convert(slice(msg.data, p + 18, 32), uint256)  # market u16, size i128
                market: uint256 = (pw >> 128) & 65535
                assert j == 0 or market > previous, "bad leaf: positions out of order"
                previous = market
                slot: uint256 = self.slot_of(market)
                assert slot < M, "position in an unknown market"
                lots: int256 = convert(convert(pw << 128, bytes32), int256) >> 128
                assert lots % steps[slot] == 0, "position off step"
                lots //= steps[slot]
                assert lots > -SMALL and lots < SMALL, "position beyond the AIR's bounds"
                funding: uint256 = convert(slice(msg.data, p + 34, 32), uint256) & L.M128
                if funding >> 127 == 1:  # negative: -(2^128 - f) = f - 2^128 (mod p)
                    funding = funding % L.P + L.P - R128
                acc = L.reduce_lanes(
                    unsafe_add(
                        unsafe_add(acc, unsafe_mul(dm[9 + slot], convert(lots + P_SIGNED, uint256))),
                        unsafe_mul(dm[9 + M + slot], funding % L.P),
                    )
                )
            if side == 0:
                ini = L.ext_mul(ini, L.ext_sub(gamma, L.reduce_lanes(acc)))
            else:
                fin = L.ext_mul(fin, L.ext_sub(gamma, L.reduce_lanes(acc)))
    return L.ext_mul(fin, L.ext_inv(ini))


# ------------------------------------------------------------------ events

M192: constant(uint256) = (1 << 192) - 1


@internal
@view
def owner_account(s: Statement, key: uint256) -> uint256:
    """The diff account whose new leaf starts with key = owner || subaccount (the last
    such, as derive_public's dict), or revert. memory_target checked the diff's bounds."""
    b: uint256 = s.start - 32
    found: bool = False
    aid: uint256 = 0
    o: uint256 = s.accounts_at
    for _: uint256 in range(s.num_accounts, bound=MAX_ENTRIES):
        w: uint256 = self.word(b, o + 6)
        new_at: uint256 = o + 8 + (w & 65535)
        new_len: uint256 = self.word(b, new_at) & 65535
        if new_len >= 24 and self.word(b, new_at + 24) & M192 == key:
            found = True
            aid = (w >> 16) & L.M32
        o = new_at + new_len
    assert found, "an event credits no account of the diff"
    return aid


@internal
@pure
def amount_fp(gamma2: uint256, de: uint256[K], tag: uint256, j: uint256, acct: uint256, amount: uint256) -> uint256:
    """fp of (tag, j, acct, four 11-bit limbs of amount, zeros)."""
    assert amount > 0 and amount < 1 << 44, "an amount is beyond the AIR's bounds"
    acc: uint256 = L.reduce_lanes(
        unsafe_add(
            unsafe_add(unsafe_mul(de[0], tag), unsafe_mul(de[1], j)),
            unsafe_add(unsafe_mul(de[2], acct), unsafe_mul(de[3], amount & 2047)),
        )
    )
    acc = L.reduce_lanes(
        unsafe_add(
            unsafe_add(acc, unsafe_mul(de[4], (amount >> 11) & 2047)),
            unsafe_add(unsafe_mul(de[5], (amount >> 22) & 2047), unsafe_mul(de[6], amount >> 33)),
        )
    )
    return L.ext_sub(gamma2, acc)


struct Events:
    product: uint256
    count: uint256
    deposits: uint256
    withdrawals: uint256
    funding: uint256
    forced: uint256


@internal
@view
def events(s: Statement, gamma2: uint256, delta2: uint256) -> Events:
    """BatchAir.event_target's product (without the quiet rows' γ2 power) and the list
    lengths: deposits, withdrawals, funding vectors after each tick, forced entries
    served > 0, in this order."""
    b: uint256 = s.start - 32
    de: uint256[K] = self.powers(delta2)
    ev: Events = empty(Events)
    ev.product = 1
    for j: uint256 in range(s.num_deposits, bound=MAX_ENTRIES):
        at: uint256 = s.deposits_at + 48 * j  # id u64, owner, subaccount u32, amount u128
        acct: uint256 = self.owner_account(s, self.word(b, at + 32) & M192)
        amount: uint256 = self.word(b, at + 48) & L.M128
        ev.product = L.ext_mul(ev.product, self.amount_fp(gamma2, de, TAG_DEPOSIT, j + 1, acct, amount))
    ev.deposits = s.num_deposits
    for j: uint256 in range(s.num_withdrawals, bound=MAX_ENTRIES):
        amount: uint256 = self.word(b, s.withdrawals_at + 36 * j + 36) & L.M128
        ev.product = L.ext_mul(ev.product, self.amount_fp(gamma2, de, TAG_WITHDRAWAL, j + 1, 0, amount))
    ev.withdrawals = s.num_withdrawals
    # funding: replay the ticks from the old globals' prices and indices
    prices: uint256[M] = empty(uint256[M])
    indices: int256[M] = empty(int256[M])
    for i: uint256 in range(M):
        g: uint256 = s.old_globals_at + 80 + 42 * i  # market u16, price u128, time u64, index i128
        assert self.word(b, g + 2) & 65535 == MK.IDS[i], "old globals for other markets"
        prices[i] = self.word(b, g + 18) & L.M128
        indices[i] = self.signed(self.word(b, g + 42), 128)
    rates: int256[M] = empty(int256[M])
    has_rate: bool[M] = empty(bool[M])
    pending: bool = False
    for t: uint256 in range(s.num_ticks, bound=MAX_ENTRIES):
        w: uint256 = self.word(b, s.ticks_at + 19 * t + 19)  # kind u8, market u16, value i128
        kind: uint256 = (w >> 144) & 255
        market: uint256 = (w >> 128) & 65535
        value: int256 = self.signed(w, 128)
        slot: uint256 = self.slot_of(market)
        emit: bool = False
        if kind == TICK_ORACLE:
            assert not pending and slot < M and value > 0, "malformed oracle tick"
            prices[slot] = convert(value, uint256)
            emit = True
        elif kind == TICK_FUNDING and market == END_OF_FUNDING:
            for i: uint256 in range(M):
                if has_rate[i]:
                    assert abs(rates[i]) <= MK.MAX_RATE[i] and prices[i] > 0, "funding rate above the clamp or without a price"
                    indices[i] += rates[i] * convert(prices[i], int256) * MK.STEP[i] // MK.FUNDING_DEN[i]
            rates = empty(int256[M])
            has_rate = empty(bool[M])
            pending = False
            emit = True
        elif kind == TICK_FUNDING and slot < M:
            assert not has_rate[slot], "market repeated in a funding tick"
            has_rate[slot] = True
            rates[slot] = value
            pending = True
        else:
            raise "malformed tick"
        if emit:
            ev.funding += 1
            acc: uint256 = L.reduce_lanes(
                unsafe_add(unsafe_mul(de[0], TAG_FUNDING), unsafe_mul(de[1], ev.funding))
            )
            for i: uint256 in range(M):
                acc = L.reduce_lanes(
                    unsafe_add(
                        acc,
                        unsafe_add(
                            unsafe_mul(de[7 + i], self.mod_p(indices[i])),
                            unsafe_mul(de[7 + M + i], self.in_ticks(prices[i], i)),
                        ),
                    )
                )
            ev.product = L.ext_mul(ev.product, L.ext_sub(gamma2, acc))
    assert not pending, "unterminated funding tick"
    for j: uint256 in range(s.num_forced, bound=MAX_ENTRIES):
        at: uint256 = s.forced_at + 84 * j  # id, owner, subaccount, requested, recipient, served
        served: uint256 = self.word(b, at + 84) & L.M128
        if served == 0:
            continue
        acct: uint256 = self.owner_account(s, self.word(b, at + 32) & M192)
        assert acct >= FIRST_USER_ID, "a forced request is served from no user account"
        ev.forced += 1
        ev.product = L.ext_mul(ev.product, self.amount_fp(gamma2, de, TAG_FORCED, ev.forced, acct, served))
    ev.count = ev.deposits + ev.withdrawals + ev.funding + ev.forced
    return ev


@internal
@view
def event_target(s: Statement, ev: Events, gamma2: uint256) -> uint256:
    """Π fp(public events) · γ2^(rows without an event)."""
    assert ev.count < s.n, "more events than rows"
    return L.ext_mul(ev.product, self.ext_pow(gamma2, s.n - 1 - ev.count))


@internal
@view
def initial_index(s: Statement, i: uint256) -> uint256:
    return self.mod_p(self.signed(self.word(s.start - 32, s.old_globals_at + 122 + 42 * i), 128))


@internal
@view
def initial_price(s: Statement, i: uint256) -> uint256:
    return self.in_ticks(self.word(s.start - 32, s.old_globals_at + 98 + 42 * i) & L.M128, i)
