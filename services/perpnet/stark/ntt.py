"""Radix-2 NTT over BabyBear, vectorised across columns, and coset low-degree extension.

A Stockham formulation keeps input and output in natural order (no bit reversal).
Each stage is a few whole-array NumPy operations over every column at once. The
data moves from a "k-major" layout (long inner loops while sub-transforms are
short) to a "j-major" layout (long inner loops once they are long) with one
transpose halfway, so no stage runs with tiny inner loops. Additions are reduced
lazily: values may grow to 5p (< 2^33, so times a twiddle < 2^64) before one
reduction, x − ⌊x/p⌋·p (field.reduce: NumPy's `%` is a hardware division, its
scalar floor division libdivide's multiply and shifts, over twice as fast).

All functions take (columns, n) arrays of reduced uint64 and return new arrays.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from perpnet.stark.field import P64, Arr, P, inv, powers, reduce, two_adic_root


@lru_cache(maxsize=64)
def _twiddles(log_n: int, inverse: bool) -> tuple[Arr, ...]:
    """Per stage s (sub-transform length L = 2^s): [w_{2L}^k for k < L]."""
    n = 1 << log_n
    root = two_adic_root(log_n)
    if inverse:
        root = inv(root)
    master = powers(root, max(n // 2, 1))
    out = []
    for s in range(log_n):
        length = 1 << s
        out.append(np.ascontiguousarray(master[:: n // (2 * length)][:length]))
    for arr in out:
        arr.setflags(write=False)
    return tuple(out)


@lru_cache(maxsize=64)
def coset_powers(shift: int, n: int) -> Arr:
    """[1, shift, shift^2, ...] (cached: every LDE of one size uses the same)."""
    out = powers(shift, n)
    out.setflags(write=False)
    return out


_BLOCK_ELEMENTS = 1 << 17
"""Columns are transformed in blocks of about this many elements (1 MiB), so each
stage's passes stay in the L2 cache instead of streaming the whole matrix."""


def _transform(values: Arr, inverse: bool) -> Arr:
    """Unscaled DFT along the last axis of a (w, n) array."""
    w, n = values.shape
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    if w > rows:
        out = np.empty_like(values)
        for s in range(0, w, rows):
            out[s : s + rows] = _transform_block(values[s : s + rows], inverse)
        return out
    return _transform_block(values, inverse)


def _transform_block(values: Arr, inverse: bool) -> Arr:
    w, n = values.shape
    log_n = n.bit_length() - 1
    if n != 1 << log_n:
        raise ValueError("NTT size must be a power of two")
    if log_n == 0:
        return values.copy()
    tws = _twiddles(log_n, inverse)
    buf_a = values.copy()
    buf_b = np.empty_like(buf_a)
    scratch = np.empty(w * n // 2, dtype=np.uint64)
    bound = 1  # values are < bound·p
    length = 1
    k_major = True
    for s in range(log_n):
        half = n // (2 * length)
        if k_major and length >= half:
            buf_b[:] = buf_a.reshape(w, length, n // length).transpose(0, 2, 1).reshape(w, n)
            buf_a, buf_b = buf_b, buf_a
            k_major = False
        if bound >= 5:
            _reduce(buf_a, buf_b)
            bound = 1
        tw = tws[s]
        if k_major:
            cur = buf_a.reshape(w, length, 2 * half)
            nxt = buf_b.reshape(w, 2 * length, half)
            even, odd = cur[:, :, :half], cur[:, :, half:]
            lo, hi = nxt[:, :length, :], nxt[:, length:, :]
            t = scratch.reshape(w, length, half)
            np.multiply(odd, tw[:, None], out=t)
        else:
            cur = buf_a.reshape(w, 2 * half, length)
            nxt = buf_b.reshape(w, half, 2 * length)
            even, odd = cur[:, :half, :], cur[:, half:, :]
            lo, hi = nxt[:, :, :length], nxt[:, :, length:]
            t = scratch.reshape(w, half, length)
            np.multiply(odd, tw, out=t)
        _reduce(t, hi)  # hi is written next: scratch until then
        np.add(even, t, out=lo)
        np.subtract(even, t, out=hi)  # wraps mod 2^64; adding p restores even + p - t
        np.add(hi, P64, out=hi)
        bound += 1
        buf_a, buf_b = buf_b, buf_a
        length *= 2
    _reduce(buf_a, buf_b)
    return buf_a


def _reduce(x: Arr, scratch: Arr) -> None:
    """x mod p in place, as field.reduce, with the quotients in `scratch` (same shape)."""
    np.floor_divide(x, P64, out=scratch)
    np.multiply(scratch, P64, out=scratch)
    np.subtract(x, scratch, out=x)


def ntt(coeffs: Arr) -> Arr:
    """Evaluations on the subgroup <w_n>, natural order: out[i] = f(w_n^i)."""
    return _transform(_as_2d(coeffs), inverse=False).reshape(coeffs.shape)


def intt(values: Arr) -> Arr:
    """Coefficients of the polynomial taking `values` on <w_n> (inverse of ntt)."""
    v = _as_2d(values)
    out = _transform(v, inverse=True)
    out *= np.uint64(inv(v.shape[1]))
    reduce(out)
    return out.reshape(values.shape)


def interpolate_coset(values: Arr, shift: int) -> Arr:
    """Coefficients of f with values[i] = f(shift·w_n^i)."""
    v = _as_2d(values)
    n = v.shape[1]
    out = _transform(v, inverse=True)
    scale = coset_powers(inv(shift), n) * np.uint64(inv(n)) % P64
    out *= scale
    reduce(out)
    return out.reshape(values.shape)


def evaluate_coset(coeffs: Arr, size: int, shift: int) -> Arr:
    """Evaluations of each row's polynomial on shift·<w_size> (size >= #coeffs).

    With m coefficients and size = b·m, the domain splits into b cosets
    shift·w_size^j·<w_m>; b transforms of size m (done as one batch) cost
    b·m·log m instead of b·m·log(b·m) for the zero-padded transform, and are
    interleaved back into natural order.
    """
    c = _as_2d(coeffs)
    w, m = c.shape
    if m > size:
        raise ValueError("more coefficients than evaluation points")
    if m == 0 or m & (m - 1) or size & (size - 1):
        raise ValueError("sizes must be powers of two")
    b = size // m
    root = two_adic_root(size.bit_length() - 1)
    scaled = np.empty((b, w, m), dtype=np.uint64)
    for j in range(b):
        np.multiply(c, coset_powers(shift * pow(root, j, P) % P, m), out=scaled[j])
    reduce(scaled)
    out = _transform(scaled.reshape(b * w, m), inverse=False).reshape(b, w, m)
    lde = np.ascontiguousarray(out.transpose(1, 2, 0)).reshape(w, size)
    return lde if coeffs.ndim == 2 else lde.reshape(size)


def _as_2d(a: Arr) -> Arr:
    if a.ndim == 1:
        return a.reshape(1, -1)
    if a.ndim != 2:
        raise ValueError("expected a (columns, n) array")
    return a


__all__ = ["P", "evaluate_coset", "interpolate_coset", "intt", "ntt"]
