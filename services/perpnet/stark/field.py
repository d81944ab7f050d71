"""BabyBear arithmetic, vectorised over NumPy uint64 arrays, and its degree-4 extension.

p = 15·2^27 + 1 < 2^31, so the product of two reduced elements is below 2^62 and
fits a uint64: every multiplication is one `*` and one reduction (`reduce`: NumPy
divides by a scalar with libdivide, but its `%` is a hardware division). Up to four
such products can be summed before reducing (4·p² < 2^64), which the extension
multiply relies on.

The extension F_p[X]/(X^4 - 11) holds every verifier challenge so soundness rests
on a ~124-bit field, not the 31-bit base field. Extension arrays have shape
(4, k): row i holds the coefficient of X^i. A single extension element is (4, 1),
so it broadcasts against arrays of any length.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

Arr = NDArray[np.uint64]

P = 15 * 2**27 + 1
P64 = np.uint64(P)
GENERATOR = 31
"""Generates the multiplicative group; also the coset shift of every LDE domain."""
TWO_ADICITY = 27
EXT_DEGREE = 4
W = 11
"""X^4 = W in the extension; 11 is a non-residue mod p, so X^4 - 11 is irreducible."""
W64 = np.uint64(W)
EXT_BITS = 123
"""floor(log2(p^4)): the size of the challenge field in bits."""


def reduce(a: Arr) -> Arr:
    """a mod p, in place, for a uint64 array of any values; returns a.

    Written as a − ⌊a/p⌋·p because NumPy divides by a scalar with libdivide (a
    multiply-high and shifts) but computes `%` with hardware division: the same
    result in less than half the time, which matters in every hot loop here.
    """
    if a.size < _SMALL:  # per-call overhead dominates: one `%`
        a %= P64
        return a
    q = np.floor_divide(a, P64)
    q *= P64
    a -= q
    return a


_SMALL = 256
"""Below this many elements, fewer NumPy calls beat cheaper ones (the verifier's and the
out-of-domain arithmetic work on single elements)."""


def to_field(values: Iterable[int] | NDArray[np.integer[Any]]) -> Arr:
    """An array of canonical field elements from ints of any size (reduced mod p)."""
    if isinstance(values, np.ndarray):
        if values.dtype == np.uint64:
            return reduce(values.astype(np.uint64))
        return np.array([int(v) % P for v in values.ravel()], dtype=np.uint64).reshape(values.shape)
    return np.array([int(v) % P for v in values], dtype=np.uint64)


def inv(x: int) -> int:
    """Inverse of a nonzero base element."""
    x %= P
    if x == 0:
        raise ZeroDivisionError("inverse of zero in BabyBear")
    return pow(x, P - 2, P)


def two_adic_root(log_n: int) -> int:
    """A primitive 2^log_n-th root of unity."""
    if not 0 <= log_n <= TWO_ADICITY:
        raise ValueError(f"BabyBear has no subgroup of size 2^{log_n}")
    return pow(GENERATOR, (P - 1) >> log_n, P)


def powers(base: int, n: int) -> Arr:
    """[1, base, base^2, ...] of length n, built by doubling (log n vector steps)."""
    out = np.empty(max(n, 1), dtype=np.uint64)
    out[0] = 1
    m = 1
    step = base % P
    while m < n:
        k = min(m, n - m)
        np.multiply(out[:k], np.uint64(step), out=out[m : m + k])
        reduce(out[m : m + k])
        step = step * step % P
        m *= 2
    return out[:n]


def add(a: Arr, b: Arr) -> Arr:
    """a + b for reduced a, b (broadcasting), without a `%`: s < 2p, and where s < p,
    s − p wraps past 2^63, so the minimum picks the reduced value (3× cheaper)."""
    s: Arr = np.add(a, b)
    return _reduce_once(s)


def sub(a: Arr, b: Arr) -> Arr:
    """a − b for reduced a, b (broadcasting), as a + (p − b) reduced once."""
    s: Arr = np.add(a, P64 - b)
    return _reduce_once(s)


def mul(a: Arr, b: Arr) -> Arr:
    return reduce(a * b)


def neg(a: Arr) -> Arr:
    """−a for reduced a: p − a is in (0, p], and p itself maps to 0."""
    s: Arr = np.subtract(P64, a)
    return _reduce_once(s)


def _reduce_once(s: Arr) -> Arr:
    """s mod p for s < 2p, in place."""
    np.minimum(s, s - P64, out=s)
    return s


def pow_vec(a: Arr, e: int) -> Arr:
    """Element-wise a^e by square-and-multiply over whole arrays."""
    result = np.ones_like(a)
    base = a.copy()
    while e:
        if e & 1:
            result = mul(result, base)
        e >>= 1
        if e:
            base = mul(base, base)
    return result


def batch_inv(a: Arr) -> Arr:
    """Element-wise inverses; raises on any zero so callers never divide by 0.

    Montgomery's trick run on L lanes at once: the elements form a (K, L) grid, K
    sequential steps of L-wide vector products build each lane's prefix products,
    one Fermat inversion (~60 passes) inverts the L lane totals, and K steps back
    peel off each element's inverse. About 3 multiplications per element instead
    of Fermat's ~60, in about 3·√n NumPy calls.
    """
    if a.size and not np.all(a):
        raise ZeroDivisionError("batch inverse of an array containing zero")
    n = a.size
    steps = int(np.sqrt(n)) // 4
    if steps < 2:
        return pow_vec(a, P - 2)
    lanes = -(-n // steps)
    flat = np.ones(steps * lanes, dtype=np.uint64)
    flat[:n] = a.reshape(-1)
    grid = flat.reshape(steps, lanes)
    prefix = np.empty_like(grid)
    prefix[0] = grid[0]
    for i in range(1, steps):
        np.multiply(prefix[i - 1], grid[i], out=prefix[i])
        reduce(prefix[i])
    acc = pow_vec(prefix[steps - 1], P - 2)  # 1 / (lane product)
    out = np.empty_like(grid)
    for i in range(steps - 1, 0, -1):
        np.multiply(acc, prefix[i - 1], out=out[i])
        reduce(out[i])
        acc = mul(acc, grid[i])
    out[0] = acc
    result: Arr = out.reshape(-1)[:n].reshape(a.shape)
    return result


# ---------------------------------------------------------------- extension field


def ext(c0: int, c1: int = 0, c2: int = 0, c3: int = 0) -> Arr:
    """One extension element as a (4, 1) array."""
    return np.array([[c0 % P], [c1 % P], [c2 % P], [c3 % P]], dtype=np.uint64)


def ext_from_base(a: Arr) -> Arr:
    """Embed base elements (k,) as extension elements (4, k)."""
    out = np.zeros((4, *a.shape), dtype=np.uint64)
    out[0] = a
    return out


def ext_zero(k: int = 1) -> Arr:
    return np.zeros((4, k), dtype=np.uint64)


def ext_one(k: int = 1) -> Arr:
    out = np.zeros((4, k), dtype=np.uint64)
    out[0] = 1
    return out


def ext_add(a: Arr, b: Arr) -> Arr:
    return reduce(a + b)


def ext_sub(a: Arr, b: Arr) -> Arr:
    return reduce(a + (P64 - b))


def ext_neg(a: Arr) -> Arr:
    return reduce(P64 - a)


def ext_mul(a: Arr, b: Arr) -> Arr:
    """Product in F_p[X]/(X^4 - 11); a and b broadcast over their trailing axes.

    The smaller factor's X^1..X^3 coefficients are multiplied by 11 first (free for a
    challenge against a column), so every output coefficient is a sum of four
    products of reduced elements, below 4·p² < 2^64: one reduction each, written in
    place for long operands.
    """
    if a.size < b.size:
        a, b = b, a  # commutative: scale the smaller operand by W
    a0, a1, a2, a3 = a[0], a[1], a[2], a[3]
    b0, b1, b2, b3 = b[0], b[1], b[2], b[3]
    if a.size < _SMALL:  # per-call overhead dominates: whole expressions, plain `%`
        bw1, bw2, bw3 = b[1:] * W64 % P64
        return np.stack(
            np.broadcast_arrays(
                (a0 * b0 + a1 * bw3 + a2 * bw2 + a3 * bw1) % P64,
                (a0 * b1 + a1 * b0 + a2 * bw3 + a3 * bw2) % P64,
                (a0 * b2 + a1 * b1 + a2 * b0 + a3 * bw3) % P64,
                (a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0) % P64,
            )
        )
    bw1, bw2, bw3 = reduce(b[1:] * W64)
    shape = np.broadcast_shapes(a.shape[1:], b.shape[1:])
    out = np.empty((4, *shape), dtype=np.uint64)
    tmp = np.empty(shape, dtype=np.uint64)
    for i, terms in enumerate(
        (
            ((a0, b0), (a1, bw3), (a2, bw2), (a3, bw1)),
            ((a0, b1), (a1, b0), (a2, bw3), (a3, bw2)),
            ((a0, b2), (a1, b1), (a2, b0), (a3, bw3)),
            ((a0, b3), (a1, b2), (a2, b1), (a3, b0)),
        )
    ):
        o = out[i, ...]
        np.multiply(terms[0][0], terms[0][1], out=o)
        for x, y in terms[1:]:
            np.multiply(x, y, out=tmp)
            np.add(o, tmp, out=o)
        reduce(o)
    return out


def ext_mul_base(a: Arr, b: Arr) -> Arr:
    """Extension (4, ...) times base (...)."""
    return reduce(a * b[None])


def ext_square(a: Arr) -> Arr:
    return ext_mul(a, a)


def ext_pow(a: Arr, e: int) -> Arr:
    result = np.broadcast_to(ext_one(), a.shape).copy()
    base = a.copy()
    while e:
        if e & 1:
            result = ext_mul(result, base)
        e >>= 1
        if e:
            base = ext_mul(base, base)
    return result


def ext_inv(a: Arr) -> Arr:
    """Element-wise inverses through the tower F_p ⊂ F_p[u]/(u²-11) ⊂ F_p[X]/(X²-u).

    With A0 = a0 + a2·u and A1 = a1 + a3·u, a = A0 + A1·X and
    a·(A0 - A1·X) = A0² - u·A1² lies in the quadratic subfield, whose norm lies in
    F_p: one base inversion per element.
    """
    a0, a1, a2, a3 = a[0], a[1], a[2], a[3]
    # N = A0^2 - u*A1^2 = n0 + n1*u
    n0 = reduce(a0 * a0 + W64 * reduce(a2 * a2) + (P64 - reduce(2 * a1 * a3)) * W64)
    # 2*a1*a3 < 2^63: safe.
    n1 = reduce(
        reduce(2 * a0 * a2) + (P64 - reduce(a1 * a1)) + (P64 - reduce(W64 * reduce(a3 * a3)))
    )
    norm = reduce(reduce(n0 * n0) + (P64 - reduce(W64 * reduce(n1 * n1))))
    t = batch_inv(norm)
    # N^-1 = (n0 - n1*u) * t
    m0 = reduce(n0 * t)
    m1 = reduce((P64 - n1) * t)
    # a^-1 = (A0 - A1 X) * (m0 + m1 u)
    # A0*(m0 + m1 u) = (a0 m0 + 11 a2 m1) + (a0 m1 + a2 m0) u
    # -A1*(m0 + m1 u) = -(a1 m0 + 11 a3 m1) - (a1 m1 + a3 m0) u
    r0 = reduce(a0 * m0 + W64 * reduce(a2 * m1))
    r2 = reduce(a0 * m1 + a2 * m0)
    r1 = reduce(P64 - reduce(a1 * m0 + W64 * reduce(a3 * m1)))
    r3 = reduce(P64 - reduce(a1 * m1 + a3 * m0))
    return np.stack([r0, r1, r2, r3])


def ext_inv_const_minus(c: Arr, v: Arr) -> Arr:
    """1/(c − v) as (4, k) for one extension element c (4, 1) and base elements v (k,).

    ext_inv's tower formula with a1..a3 = c1..c3 constant: the terms in them alone are
    scalars, so about half of its full-width passes go (lookup denominators β − v and
    the DEEP denominators x − z have this shape).
    """
    c0, c1, c2, c3 = (int(x) for x in c.reshape(4))
    a0 = sub(np.full(v.shape, c0, dtype=np.uint64), v)
    # N = n0 + n1·u with n0 = a0² + K0 and n1 = 2·c2·a0 + K1 (see ext_inv)
    k0 = np.array((W * c2 * c2 - 2 * W * c1 * c3) % P, dtype=np.uint64)
    k1 = np.array((-c1 * c1 - W * c3 * c3) % P, dtype=np.uint64)
    n0 = add(reduce(a0 * a0), k0)
    n1 = add(reduce(a0 * np.uint64(2 * c2 % P)), k1)
    norm = sub(reduce(n0 * n0), reduce(reduce(n1 * n1) * W64))
    t = batch_inv(norm)
    m0 = reduce(n0 * t)
    m1 = reduce(neg(n1) * t)
    w2, w3 = np.uint64(W * c2 % P), np.uint64(W * c3 % P)
    out = np.empty((4, *v.shape), dtype=np.uint64)
    out[0] = reduce(a0 * m0 + w2 * m1)
    out[1] = neg(reduce(np.uint64(c1) * m0 + w3 * m1))
    out[2] = reduce(a0 * m1 + np.uint64(c2) * m0)
    out[3] = neg(reduce(np.uint64(c1) * m1 + np.uint64(c3) * m0))
    return out


def ext_powers(z: Arr, n: int) -> Arr:
    """[1, z, z^2, ..., z^(n-1)] as (4, n), by doubling."""
    out = np.zeros((4, n), dtype=np.uint64)
    out[0, 0] = 1
    m = 1
    step = z.reshape(4, 1).copy()
    while m < n:
        k = min(m, n - m)
        out[:, m : m + k] = ext_mul(out[:, :k], step)
        step = ext_mul(step, step)
        m *= 2
    return out


def ext_prod(a: Arr) -> Arr:
    """Product of all elements of a (4, k) array, as (4, 1), by pairwise halving."""
    cur = a
    while cur.shape[1] > 1:
        k = cur.shape[1]
        if k % 2:
            cur = np.concatenate([cur, ext_one()], axis=1)
            k += 1
        cur = ext_mul(cur[:, : k // 2], cur[:, k // 2 :])
    if cur.shape[1] == 0:
        return ext_one()
    return cur


def ext_cumprod(a: Arr) -> Arr:
    """Running products out[:, i] = a[:, 0]·…·a[:, i] of a (4, k) array.

    Blocked so NumPy does the work: prefix products inside √k-sized blocks (vectorised
    across blocks), then the prefix of block totals, then one broadcast multiply.
    """
    k = a.shape[1]
    if k == 0:
        return a.copy()
    block = max(1, int(np.sqrt(k)))
    nblocks = -(-k // block)
    padded = np.zeros((4, nblocks * block), dtype=np.uint64)
    padded[0] = 1
    padded[:, :k] = a
    grid = padded.reshape(4, nblocks, block)
    for j in range(1, block):
        grid[:, :, j] = ext_mul(grid[:, :, j - 1], grid[:, :, j])
    totals = grid[:, :, block - 1]
    carry = np.empty((4, nblocks), dtype=np.uint64)
    carry[:, 0] = ext_one()[:, 0]
    for b in range(1, nblocks):
        carry[:, b] = ext_mul(carry[:, b - 1 : b], totals[:, b - 1 : b])[:, 0]
    grid = ext_mul(grid, carry[:, :, None])
    return grid.reshape(4, nblocks * block)[:, :k].copy()


def ext_to_ints(a: Arr) -> tuple[int, int, int, int]:
    """A single extension element as a tuple of Python ints."""
    flat = a.reshape(4)
    return (int(flat[0]), int(flat[1]), int(flat[2]), int(flat[3]))


def ext_is_base(a: Arr) -> bool:
    return not bool(np.any(a.reshape(4, -1)[1:]))


# ---------------------------------------------------------------- exact matrix products


_LIMB = np.uint64(0xFFFF)


def matmul(a: Arr, b: Arr) -> Arr:
    """(a @ b) mod p for reduced uint64 matrices, exactly, through float64 BLAS.

    Both factors are split into 16-bit limbs, so each float product is below 2^32 and
    sums of up to 2^21 of them stay exact in a double's 53-bit mantissa. Four dgemm
    calls replace a Python-level multiply-accumulate loop.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError("matmul needs (m, k) @ (k, n)")
    k = a.shape[1]
    chunk = 1 << 20
    if k > chunk:
        acc = np.zeros((a.shape[0], b.shape[1]), dtype=np.uint64)
        for s in range(0, k, chunk):
            acc = reduce(acc + matmul(a[:, s : s + chunk], b[s : s + chunk]))
        return acc
    a_lo = (a & _LIMB).astype(np.float64)
    a_hi = (a >> np.uint64(16)).astype(np.float64)
    b_lo = (b & _LIMB).astype(np.float64)
    b_hi = (b >> np.uint64(16)).astype(np.float64)
    ll = reduce((a_lo @ b_lo).astype(np.uint64))
    mid = reduce((a_lo @ b_hi).astype(np.uint64) + (a_hi @ b_lo).astype(np.uint64))
    hh = reduce((a_hi @ b_hi).astype(np.uint64))
    # value = ll + mid·2^16 + hh·2^32
    mid = reduce(mid << np.uint64(16))
    hh = reduce(reduce(hh << np.uint64(16)) << np.uint64(16))
    out: Arr = reduce(ll + mid + hh)
    return out


def lincomb(coeffs: Arr, rows: Arr | NDArray[np.float64]) -> Arr:
    """coeffs (m, w) times rows (w, n) mod p, for small w: two dgemm calls.

    rows are reduced elements, as uint64 or as exact float64 (which saves a copy).

    Only the coefficients are split (16-bit limbs), so a product is below 2^47 and
    64 of them sum exactly; longer sums are done in blocks of 64.
    """
    w = coeffs.shape[1]
    if w > 64:
        acc = np.zeros((coeffs.shape[0], rows.shape[1]), dtype=np.uint64)
        for s in range(0, w, 64):
            acc += lincomb(coeffs[:, s : s + 64], rows[s : s + 64])
            reduce(acc)
        return acc
    rf = rows.astype(np.float64, copy=False)  # callers may pass float64 rows already
    lo = reduce(((coeffs & _LIMB).astype(np.float64) @ rf).astype(np.uint64))
    hi = reduce(((coeffs >> np.uint64(16)).astype(np.float64) @ rf).astype(np.uint64))
    return reduce(lo + reduce(hi << np.uint64(16)))


def felts_to_bytes(a: Arr) -> bytes:
    """Canonical encoding: each element as 4 little-endian bytes, in C order."""
    return np.ascontiguousarray(a, dtype="<u4").tobytes()
