"""BabyBear arithmetic, vectorised over NumPy uint64 arrays, and its degree-4 extension.

p = 15·2^27 + 1 < 2^31, so the product of two reduced elements is below 2^62 and
fits a uint64: every multiplication is one `*` and one `%` (NumPy reduces by a
scalar divisor with libdivide, about 2 ns an element). Up to four such products can
be summed before reducing (4·p² < 2^64), which the extension multiply relies on.

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


def to_field(values: Iterable[int] | NDArray[np.integer[Any]]) -> Arr:
    """An array of canonical field elements from ints of any size (reduced mod p)."""
    if isinstance(values, np.ndarray):
        if values.dtype == np.uint64:
            return values.astype(np.uint64) % P64
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
        out[m : m + k] %= P64
        step = step * step % P
        m *= 2
    return out[:n]


def add(a: Arr, b: Arr) -> Arr:
    s = a + b
    out: Arr = np.minimum(s, s - P64)
    return out


def sub(a: Arr, b: Arr) -> Arr:
    s = a + (P64 - b)
    out: Arr = np.minimum(s, s - P64)
    return out


def mul(a: Arr, b: Arr) -> Arr:
    return (a * b) % P64


def neg(a: Arr) -> Arr:
    return (P64 - a) % P64


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
    """Element-wise inverses (Fermat); raises on any zero so callers never divide by 0.

    Montgomery's trick is sequential; with NumPy a blocked version would need many
    small calls, while Fermat is ~58 full-width passes and simple.
    """
    if a.size and not np.all(a):
        raise ZeroDivisionError("batch inverse of an array containing zero")
    return pow_vec(a, P - 2)


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
    return (a + b) % P64


def ext_sub(a: Arr, b: Arr) -> Arr:
    return (a + (P64 - b)) % P64


def ext_neg(a: Arr) -> Arr:
    return (P64 - a) % P64


def ext_mul(a: Arr, b: Arr) -> Arr:
    """Product in F_p[X]/(X^4 - 11); a and b broadcast over their trailing axes."""
    a0, a1, a2, a3 = a[0], a[1], a[2], a[3]
    b0, b1, b2, b3 = b[0], b[1], b[2], b[3]
    # Sums of up to four products stay below 2^64; the X^4 wrap-around terms are
    # reduced before the multiplication by 11.
    hi0 = (a1 * b3 + a2 * b2 + a3 * b1) % P64
    hi1 = (a2 * b3 + a3 * b2) % P64
    hi2 = (a3 * b3) % P64
    c0 = (a0 * b0 + hi0 * W64) % P64
    c1 = (a0 * b1 + a1 * b0 + hi1 * W64) % P64
    c2 = (a0 * b2 + a1 * b1 + a2 * b0 + hi2 * W64) % P64
    c3 = (a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0) % P64
    return np.stack(np.broadcast_arrays(c0, c1, c2, c3))


def ext_mul_base(a: Arr, b: Arr) -> Arr:
    """Extension (4, ...) times base (...)."""
    return (a * b[None]) % P64


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
    n0 = (a0 * a0 + W64 * ((a2 * a2) % P64) + (P64 - ((2 * a1 * a3) % P64)) * W64) % P64
    # 2*a1*a3 < 2^63: safe.
    n1 = (
        (2 * a0 * a2) % P64 + (P64 - (a1 * a1) % P64) + (P64 - (W64 * ((a3 * a3) % P64)) % P64)
    ) % P64
    norm = (n0 * n0 % P64 + (P64 - (W64 * (n1 * n1 % P64)) % P64)) % P64
    t = batch_inv(norm)
    # N^-1 = (n0 - n1*u) * t
    m0 = n0 * t % P64
    m1 = (P64 - n1) * t % P64
    # a^-1 = (A0 - A1 X) * (m0 + m1 u)
    # A0*(m0 + m1 u) = (a0 m0 + 11 a2 m1) + (a0 m1 + a2 m0) u
    # -A1*(m0 + m1 u) = -(a1 m0 + 11 a3 m1) - (a1 m1 + a3 m0) u
    r0 = (a0 * m0 + W64 * (a2 * m1 % P64)) % P64
    r2 = (a0 * m1 + a2 * m0) % P64
    r1 = (P64 - (a1 * m0 + W64 * (a3 * m1 % P64)) % P64) % P64
    r3 = (P64 - (a1 * m1 + a3 * m0) % P64) % P64
    return np.stack([r0, r1, r2, r3])


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
            acc = (acc + matmul(a[:, s : s + chunk], b[s : s + chunk])) % P64
        return acc
    a_lo = (a & _LIMB).astype(np.float64)
    a_hi = (a >> np.uint64(16)).astype(np.float64)
    b_lo = (b & _LIMB).astype(np.float64)
    b_hi = (b >> np.uint64(16)).astype(np.float64)
    ll = (a_lo @ b_lo).astype(np.uint64) % P64
    mid = ((a_lo @ b_hi).astype(np.uint64) + (a_hi @ b_lo).astype(np.uint64)) % P64
    hh = (a_hi @ b_hi).astype(np.uint64) % P64
    # value = ll + mid·2^16 + hh·2^32
    mid = (mid << np.uint64(16)) % P64
    hh = ((hh << np.uint64(16)) % P64 << np.uint64(16)) % P64
    out: Arr = (ll + mid + hh) % P64
    return out


def lincomb(coeffs: Arr, rows: Arr) -> Arr:
    """coeffs (m, w) times rows (w, n) mod p, for small w: two dgemm calls.

    Only the coefficients are split (16-bit limbs), so a product is below 2^47 and
    64 of them sum exactly; longer sums are done in blocks of 64.
    """
    w = coeffs.shape[1]
    if w > 64:
        acc = np.zeros((coeffs.shape[0], rows.shape[1]), dtype=np.uint64)
        for s in range(0, w, 64):
            acc += lincomb(coeffs[:, s : s + 64], rows[s : s + 64])
            acc %= P64
        return acc
    rf = rows.astype(np.float64)
    lo = ((coeffs & _LIMB).astype(np.float64) @ rf).astype(np.uint64) % P64
    hi = ((coeffs >> np.uint64(16)).astype(np.float64) @ rf).astype(np.uint64) % P64
    return (lo + ((hi << np.uint64(16)) % P64)) % P64


def felts_to_bytes(a: Arr) -> bytes:
    """Canonical encoding: each element as 4 little-endian bytes, in C order."""
    return np.ascontiguousarray(a, dtype="<u4").tobytes()
