#pragma version ~=0.4.3
"""
@title perpnet STARK verifier library (a Vyper module, imported, never deployed alone)
@notice BabyBear (p = 15·2^27 + 1) and its quartic extension F_p[X]/(X^4 - 11), the
        keccak transcript's squeezes, leaf decoding and keccak Merkle multiproofs,
        exactly as perpnet.stark computes them (field.py, transcript.py, merkle.py).
        An extension element is one uint256 with limb i (the coefficient of X^i, < p)
        in bits 64i..64i+63; a base element is the same word with limbs 1..3 zero.
        Products of two limbs are < 2^62, so four of them fit a 64-bit lane and the
        arithmetic runs on unchecked EVM words, reduced mod p once per limb.
"""

P: constant(uint256) = 2013265921
NONRESIDUE: constant(uint256) = 11
GENERATOR: constant(uint256) = 31  # generates F_p^*; the coset shift of every LDE domain
TWO_ADICITY: constant(uint256) = 27
M32: constant(uint256) = 4294967295
M64: constant(uint256) = 18446744073709551615
PPPP: constant(uint256) = P | (P << 64) | (P << 128) | (P << 192)  # p in every lane
M128: constant(uint256) = 340282366920938463463374607431768211455
MAX_QUERIES: constant(uint256) = 64
# Bounds of the AIR evaluator interface (stark_verifier.IAirEvaluator)
MAX_PUBLIC: constant(uint256) = 172_032  # a 1,024-transaction batch statement, 200 accounts: ~156 KB
MAX_PROOF: constant(uint256) = 200_000
# Variable-length regions of the proof (leaves, out-of-domain values, final polynomial)
# are hashed from fixed-size calldata windows, so no buffer of the proof's maximum size
# is ever allocated in memory; the calldata must be at least WINDOW bytes long.
WINDOW: constant(uint256) = 9216
SMALL_WINDOW: constant(uint256) = 1024
MAX_WIDTH: constant(uint256) = 256
MAX_AUX: constant(uint256) = 32
MAX_FRAME: constant(uint256) = 2 * MAX_WIDTH + 2 * MAX_AUX
MAX_CHUNKS: constant(uint256) = 8
MAX_OOD: constant(uint256) = MAX_FRAME + MAX_CHUNKS
MAX_CHALLENGES: constant(uint256) = 8
MAX_CONSTRAINTS: constant(uint256) = 512
MAX_BOUNDARIES: constant(uint256) = 256
MODEXP: constant(address) = 0x0000000000000000000000000000000000000005

# Byte-swap masks 0x00FF00FF.., 0x0000FFFF.., 0x00000000FFFFFFFF.., 0x0000000000000000FFFFFFFFFFFFFFFF..
SWAP8: constant(uint256) = 450552876409790643671482431940419874915447411150352389258589821042463539455
SWAP16: constant(uint256) = 1766820105243087041267848467410591083712559083657179364930612997358944255
SWAP32: constant(uint256) = 26959946660873538060741835960174461801791452538186943042387869433855
SWAP64: constant(uint256) = 6277101735386680763495507056286727952657427581105975853055


# Cell (column, row) of the main trace (aux False) or of an auxiliary column equals
# value (packed extension; a base value has limbs 1..3 zero).
struct Boundary:
    column: uint256
    row: uint256
    aux: bool
    value: uint256


# The AIR's shape, as perpnet.stark.air.Air declares it; the trace length is the proof
# header's, which the evaluator's check holds against the statement.
struct AirInfo:
    name: Bytes[64]
    width: uint256
    aux_width: uint256
    num_challenges: uint256
    degree: uint256


# ------------------------------------------------------------------ base field


@internal
@view
def modexp(b: uint256, e: uint256) -> uint256:
    """b^e mod p through the MODEXP precompile."""
    out: Bytes[32] = raw_call(
        MODEXP,
        abi_encode(convert(32, uint256), convert(32, uint256), convert(32, uint256), b, e, P),
        max_outsize=32,
        is_static_call=True,
    )
    return convert(out, uint256)


@internal
@view
def inv(x: uint256) -> uint256:
    assert x % P != 0, "inverse of zero"
    return self.modexp(x, P - 2)


@internal
@view
def two_adic_root(log_n: uint256) -> uint256:
    """A primitive 2^log_n-th root of unity (field.two_adic_root)."""
    assert log_n <= TWO_ADICITY, "no such subgroup"
    return self.modexp(GENERATOR, (P - 1) >> log_n)


# ------------------------------------------------------------------ extension field


@internal
@pure
def pack(a0: uint256, a1: uint256, a2: uint256, a3: uint256) -> uint256:
    return a0 | (a1 << 64) | (a2 << 128) | (a3 << 192)


@internal
@pure
def reduce_lanes(x: uint256) -> uint256:
    """Each 64-bit lane mod p."""
    return (
        ((x & M64) % P)
        | ((((x >> 64) & M64) % P) << 64)
        | ((((x >> 128) & M64) % P) << 128)
        | (((x >> 192) % P) << 192)
    )


@internal
@pure
def ext_add(a: uint256, b: uint256) -> uint256:
    # limbs < 2^31: the packed sum has no carry between lanes
    x: uint256 = unsafe_add(a, b)
    return (
        ((x & M64) % P)
        | ((((x >> 64) & M64) % P) << 64)
        | ((((x >> 128) & M64) % P) << 128)
        | (((x >> 192) % P) << 192)
    )


@internal
@pure
def ext_neg(a: uint256) -> uint256:
    return self.reduce_lanes(unsafe_sub(PPPP, a))


@internal
@pure
def ext_sub(a: uint256, b: uint256) -> uint256:
    x: uint256 = unsafe_sub(unsafe_add(a, PPPP), b)
    return (
        ((x & M64) % P)
        | ((((x >> 64) & M64) % P) << 64)
        | ((((x >> 128) & M64) % P) << 128)
        | (((x >> 192) % P) << 192)
    )


@internal
@pure
def ext_mul_base(a: uint256, s: uint256) -> uint256:
    """a times a base element s < p: every lane product is < 2^62."""
    x: uint256 = unsafe_mul(a, s)
    return (
        ((x & M64) % P)
        | ((((x >> 64) & M64) % P) << 64)
        | ((((x >> 128) & M64) % P) << 128)
        | (((x >> 192) % P) << 192)
    )


@internal
@pure
def ext_mul(a: uint256, b: uint256) -> uint256:
    """a·b in F_p[X]/(X^4 - 11) with one 512-bit product: the packed words multiply as
    polynomials in 2^64 (every coefficient c_k of X^k, k = 0..6, is a sum of at most
    four products < 2^62, so < 2^64: no carry between lanes). The low word holds
    c_0..c_3, the high word (from MULMOD by 2^256 - 1) c_4..c_6; the result is
    c_k + 11·(c_(k+4) mod p) per lane, which is still < 2^64, reduced mod p."""
    lo: uint256 = unsafe_mul(a, b)
    mm: uint256 = uint256_mulmod(a, b, max_value(uint256))
    hi: uint256 = unsafe_sub(unsafe_sub(mm, lo), convert(mm < lo, uint256))
    t: uint256 = unsafe_add(
        lo,
        unsafe_mul(
            NONRESIDUE,
            ((hi & M64) % P) | ((((hi >> 64) & M64) % P) << 64) | (((hi >> 128) % P) << 128),
        ),
    )
    return (
        ((t & M64) % P)
        | ((((t >> 64) & M64) % P) << 64)
        | ((((t >> 128) & M64) % P) << 128)
        | (((t >> 192) % P) << 192)
    )


@internal
@view
def ext_inv(a: uint256) -> uint256:
    """Through the tower F_p ⊂ F_p[u]/(u^2 - 11) ⊂ F_p[X]/(X^2 - u), as field.ext_inv."""
    a0: uint256 = a & M64
    a1: uint256 = (a >> 64) & M64
    a2: uint256 = (a >> 128) & M64
    a3: uint256 = a >> 192
    # N = A0^2 - u·A1^2 = n0 + n1·u with A0 = a0 + a2·u, A1 = a1 + a3·u
    n0: uint256 = (
        unsafe_mul(a0, a0) + NONRESIDUE * (unsafe_mul(a2, a2) % P)
        + NONRESIDUE * (P - unsafe_mul(2 * a1, a3) % P)
    ) % P
    n1: uint256 = (
        unsafe_mul(2 * a0, a2) % P + (P - unsafe_mul(a1, a1) % P)
        + (P - NONRESIDUE * (unsafe_mul(a3, a3) % P) % P)
    ) % P
    norm: uint256 = (unsafe_mul(n0, n0) % P + P - NONRESIDUE * (unsafe_mul(n1, n1) % P) % P) % P
    t: uint256 = self.inv(norm)
    m0: uint256 = unsafe_mul(n0, t) % P
    m1: uint256 = unsafe_mul(P - n1, t) % P
    r0: uint256 = (unsafe_mul(a0, m0) + NONRESIDUE * (unsafe_mul(a2, m1) % P)) % P
    r2: uint256 = (unsafe_mul(a0, m1) + unsafe_mul(a2, m0)) % P
    r1: uint256 = (P - (unsafe_mul(a1, m0) + NONRESIDUE * (unsafe_mul(a3, m1) % P)) % P) % P
    r3: uint256 = (P - (unsafe_mul(a1, m1) + unsafe_mul(a3, m0)) % P) % P
    return self.pack(r0, r1, r2, r3)


@internal
@pure
def ext_pow2k(a: uint256, k: uint256) -> uint256:
    """a^(2^k)."""
    out: uint256 = a
    for _: uint256 in range(k, bound=32):
        out = self.ext_mul(out, out)
    return out


@internal
@pure
def ext_from_lanes(y: uint256, first: uint256) -> uint256:
    """The extension element whose four limbs are u32 lanes first..first+3 (0 = most
    significant) of a lane-swapped word; reverts unless each limb is < p."""
    s: uint256 = 224 - 32 * first
    e0: uint256 = (y >> s) & M32
    e1: uint256 = (y >> (s - 32)) & M32
    e2: uint256 = (y >> (s - 64)) & M32
    e3: uint256 = (y >> (s - 96)) & M32
    assert e0 < P and e1 < P and e2 < P and e3 < P, "element not reduced modulo p"
    return self.pack(e0, e1, e2, e3)


# ------------------------------------------------------------------ bytes


@internal
@pure
def swap_lanes(x: uint256) -> uint256:
    """Reverse the bytes of every 32-bit lane: eight little-endian u32 become big-endian."""
    y: uint256 = ((x >> 8) & SWAP8) | ((x & SWAP8) << 8)
    return ((y >> 16) & SWAP16) | ((y & SWAP16) << 16)


@internal
@pure
def bswap256(x: uint256) -> uint256:
    """Reverse all 32 bytes."""
    y: uint256 = self.swap_lanes(x)
    y = ((y >> 32) & SWAP32) | ((y & SWAP32) << 32)
    y = ((y >> 64) & SWAP64) | ((y & SWAP64) << 64)
    return (y >> 128) | (y << 128)


# ------------------------------------------------------------------ transcript


@internal
@pure
def squeeze(state: bytes32, counter: uint256) -> bytes32:
    """keccak(state || 0x01 || counter as u32 big-endian)."""
    return keccak256(concat(state, b"\x01", convert(convert(counter, uint32), bytes4)))


@internal
@pure
def ext_challenge(state: bytes32, counter: uint256) -> uint256:
    """Transcript.challenge_ext: four little-endian u64 limbs of one squeeze, mod p."""
    r: uint256 = self.bswap256(convert(self.squeeze(state, counter), uint256))
    return self.pack(
        (r & M64) % P, ((r >> 64) & M64) % P, ((r >> 128) & M64) % P, (r >> 192) % P
    )


# ------------------------------------------------------------------ calldata


@internal
@view
def calldata_region(at: uint256, length: uint256) -> Bytes[WINDOW]:
    """msg.data[at : at + length] (length <= WINDOW), copied through a fixed window that
    ends inside the calldata."""
    assert length <= WINDOW, "region too long"
    size: uint256 = len(msg.data)
    if length <= SMALL_WINDOW:
        s: uint256 = min(at, size - SMALL_WINDOW)
        small: Bytes[SMALL_WINDOW] = slice(msg.data, s, SMALL_WINDOW)
        return slice(small, at - s, length)
    s: uint256 = min(at, size - WINDOW)
    big: Bytes[WINDOW] = slice(msg.data, s, WINDOW)
    return slice(big, at - s, length)


# ------------------------------------------------------------------ Merkle multiproofs


@internal
@view
def merkle_root(
    depth: uint256,
    indices: DynArray[uint256, MAX_QUERIES],
    leaves: DynArray[bytes32, MAX_QUERIES],
    nodes_at: uint256,
    num_nodes: uint256,
) -> bytes32:
    """merkle.multiproof_root: sorted distinct indices < 2^depth and their leaf hashes;
    the sibling nodes are num_nodes words of calldata at absolute offset nodes_at,
    consumed bottom level first, left to right, each exactly once."""
    k: uint256 = len(indices)
    assert k > 0 and k == len(leaves), "Merkle opening: one leaf per index"
    idx: uint256[MAX_QUERIES] = empty(uint256[MAX_QUERIES])
    hs: bytes32[MAX_QUERIES] = empty(bytes32[MAX_QUERIES])
    for i: uint256 in range(k, bound=MAX_QUERIES):
        idx[i] = indices[i]
        hs[i] = leaves[i]
    used: uint256 = 0
    for _: uint256 in range(depth, bound=32):
        i: uint256 = 0
        j: uint256 = 0
        for _s: uint256 in range(MAX_QUERIES):
            if i >= k:
                break
            cur: uint256 = idx[i]
            parent: bytes32 = empty(bytes32)
            if cur & 1 == 0 and i + 1 < k and idx[i + 1] == cur + 1:
                parent = keccak256(concat(hs[i], hs[i + 1]))
                i += 2
            else:
                assert used < num_nodes, "Merkle opening: too few nodes"
                sib: bytes32 = convert(slice(msg.data, nodes_at + 32 * used, 32), bytes32)
                used += 1
                if cur & 1 == 0:
                    parent = keccak256(concat(hs[i], sib))
                else:
                    parent = keccak256(concat(sib, hs[i]))
                i += 1
            idx[j] = cur >> 1
            hs[j] = parent
            j += 1
        k = j
    assert used == num_nodes, "Merkle opening: unused nodes"
    return hs[0]


@internal
@pure
def sorted_unique(
    values: DynArray[uint256, MAX_QUERIES], mask: uint256
) -> DynArray[uint256, MAX_QUERIES]:
    """sorted(set(v & mask for v in values)), by insertion from the back."""
    out: uint256[MAX_QUERIES] = empty(uint256[MAX_QUERIES])
    k: uint256 = 0
    for v: uint256 in values:
        x: uint256 = v & mask
        j: uint256 = k
        for _: uint256 in range(MAX_QUERIES):
            if j == 0:
                break
            prev: uint256 = out[j - 1]
            if prev <= x:
                break
            out[j] = prev
            j -= 1
        if j > 0 and out[j - 1] == x:
            # a duplicate: undo the shift
            for i: uint256 in range(j, k, bound=MAX_QUERIES):
                out[i] = out[i + 1]
            continue
        out[j] = x
        k += 1
    result: DynArray[uint256, MAX_QUERIES] = []
    for i: uint256 in range(k, bound=MAX_QUERIES):
        result.append(out[i])
    return result


@internal
@pure
def index_of(values: DynArray[uint256, MAX_QUERIES], x: uint256) -> uint256:
    """Position of x in a sorted array that holds it (binary search)."""
    lo: uint256 = 0
    hi: uint256 = len(values)
    for _: uint256 in range(8):
        if hi - lo <= 1:
            break
        mid: uint256 = (lo + hi) >> 1
        if values[mid] <= x:
            lo = mid
        else:
            hi = mid
    assert values[lo] == x, "index not present"
    return lo


# ------------------------------------------------------------------ out-of-domain check


@internal
@view
def ood_check(
    log_n: uint256,
    w: uint256,
    a: uint256,
    chunks: uint256,
    ood: DynArray[uint256, MAX_OOD],
    cons: DynArray[uint256, MAX_CONSTRAINTS],
    bounds: DynArray[Boundary, MAX_BOUNDARIES],
    alpha: uint256,
    z: uint256,
):
    """protocol.composition_at(z) == Σ_c z^(n·c) · chunk_c(z): `ood` holds the trace
    (w columns at z, then at z·g), the aux trace likewise (a), then the `chunks`
    composition chunks at z. An evaluator runs it on its own constraints
    (IAirEvaluator.check), so neither its constraints nor the statement travel back to
    the verifier."""
    assert len(ood) == 2 * w + 2 * a + chunks, "out-of-domain values"
    n: uint256 = 1 << log_n
    g: uint256 = self.two_adic_root(log_n)
    acc: uint256 = 0
    apow: uint256 = 1
    for c: uint256 in cons:
        acc = self.ext_add(acc, self.ext_mul(apow, c))
        apow = self.ext_mul(apow, alpha)
    zn: uint256 = self.ext_pow2k(z, log_n)
    # transitions hold on rows 0..n-2: zerofier (z^n - 1)/(z - g^(n-1))
    last: uint256 = self.ext_sub(z, self.modexp(g, n - 1))
    total: uint256 = self.ext_mul(acc, self.ext_mul(last, self.ext_inv(self.ext_sub(zn, 1))))
    for b: Boundary in bounds:
        limit: uint256 = w
        cell: uint256 = 0
        if b.aux:
            limit = a
        assert b.column < limit and b.row < n, "boundary constraint out of range"
        if b.aux:
            cell = ood[2 * w + b.column]
        else:
            cell = ood[b.column]
        assert self.reduce_lanes(b.value) == b.value, "boundary value not reduced"
        num: uint256 = self.ext_mul(apow, self.ext_sub(cell, b.value))
        apow = self.ext_mul(apow, alpha)
        den: uint256 = self.ext_sub(z, self.modexp(g, b.row))
        total = self.ext_add(total, self.ext_mul(num, self.ext_inv(den)))
    rhs: uint256 = 0
    zpow: uint256 = 1
    for c: uint256 in range(2 * w + 2 * a, 2 * w + 2 * a + chunks, bound=MAX_CHUNKS):
        rhs = self.ext_add(rhs, self.ext_mul(zpow, ood[c]))
        zpow = self.ext_mul(zpow, zn)
    assert total == rhs, "out-of-domain check failed: constraints do not hold"
