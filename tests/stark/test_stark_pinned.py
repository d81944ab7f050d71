"""Proof bytes are pinned: the prover is deterministic, and speed work on it (witness,
NTT, Merkle, constraint evaluation) must not change a single byte of any proof.

The digests were recorded with the prover as it was before its vectorised fast paths;
a change here means the proof format, the AIR, the parameters or the arithmetic
changed. Update a pin only for an intended change of one of those (and say so).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from perpnet.stark import field as ff
from perpnet.stark.air import FE
from perpnet.stark.batch_air import _dot
from perpnet.stark.batch_bench import build_batch
from perpnet.stark.batch_proof import prove_batch
from perpnet.stark.examples import FibonacciAir, RegisterPermutationAir
from perpnet.stark.field import P
from perpnet.stark.prover import prove


def digest(proof: bytes) -> str:
    return hashlib.sha256(proof).hexdigest()


def test_example_proofs_are_pinned() -> None:
    fib = FibonacciAir.trace(64)
    proof = prove(FibonacciAir(64, int(fib[1, -1])), fib)
    assert digest(proof) == "e2981f8dca4f3e1d26c8892a3345bc66a74e452dfeb9765b02e67bf32601d752"
    air, trace = RegisterPermutationAir.example(256, width=12)
    assert digest(prove(air, trace)) == (
        "ec8dbd818031f988769b560200e6e703a8163bcbaa0bb48ae39cc62e881e2ff5"
    )


def test_batch_proof_is_pinned() -> None:
    """A 51-transaction workload batch (trades, funding settlements, deposits, transfers,
    margin chains) with the default parameters. Re-pinned for perpnet.batch.v4 (the
    range-check table at two values per row: this batch now proves on 2,048 rows)."""
    before, batch = build_batch(48, 12, seed=5)
    proof = prove_batch(before, batch)
    assert digest(proof.stark) == (
        "a63037e0ece93d1e96cec2112fd808548e587dbc7c1474cdacffe6381266bc3b"
    )


def _ref_ext_mul(a: list[int], b: list[int]) -> list[int]:
    out = [0] * 7
    for i in range(4):
        for j in range(4):
            out[i + j] += a[i] * b[j]
    return [(out[i] + (11 * out[i + 4] if i < 3 else 0)) % P for i in range(4)]


@pytest.mark.parametrize("n", [64, 1000, 4097])
def test_batch_inverse_of_long_arrays(n: int) -> None:
    """Long arrays take the lane-parallel Montgomery path (with padding when the lanes
    do not divide n); shapes are kept and p − 1, 1 are inverted too."""
    rng = np.random.default_rng(n)
    a = rng.integers(1, P, n, dtype=np.uint64)
    a[:2] = [1, P - 1]
    inv = ff.batch_inv(a.reshape(1, n))
    assert inv.shape == (1, n)
    assert (ff.mul(a, inv[0]) == 1).all()
    assert inv[0, 1] == P - 1
    with pytest.raises(ZeroDivisionError):
        ff.batch_inv(np.concatenate([a, np.zeros(1, dtype=np.uint64)]))


def test_ext_mul_extremes_and_broadcasting() -> None:
    """All coefficients p − 1 (the largest sums of products), and a single element
    against a vector in either order."""
    top = np.full((4, 3), P - 1, dtype=np.uint64)
    assert ff.ext_mul(top, top)[:, 0].tolist() == _ref_ext_mul([P - 1] * 4, [P - 1] * 4)
    rng = np.random.default_rng(3)
    one = rng.integers(0, P, (4, 1), dtype=np.uint64)
    vec = rng.integers(0, P, (4, 9), dtype=np.uint64)
    for prod in (ff.ext_mul(one, vec), ff.ext_mul(vec, one)):
        for i in range(9):
            assert prod[:, i].tolist() == _ref_ext_mul(one[:, 0].tolist(), vec[:, i].tolist())


def test_constant_weighted_dot_matches_term_sum() -> None:
    """The batch AIR's matrix-product dot equals the term-by-term FE sum, base or ext."""
    rng = np.random.default_rng(5)
    comps = [FE.base(rng.integers(0, P, 50, dtype=np.uint64)) for _ in range(4)]
    comps.append(FE.const(P - 1))
    ext_w = [FE.ext(rng.integers(0, P, (4, 1), dtype=np.uint64)) for _ in comps]
    base_w = [FE.const(int(x)) for x in rng.integers(0, P, len(comps))]
    for weights in (ext_w, base_w):
        want = comps[0] * weights[0]
        for w, c in zip(weights[1:], comps[1:], strict=True):
            want = want + w * c
        got = _dot(weights, comps)
        assert got.is_ext == want.is_ext
        assert np.array_equal(got.v, want.v)


def test_inverse_of_constant_minus_base() -> None:
    """1/(c − v) for an extension constant c and base v equals the general inverse,
    including c in the base field, and refuses v = c."""
    rng = np.random.default_rng(11)
    v = rng.integers(0, P, 300, dtype=np.uint64)
    v[:3] = [0, 1, P - 1]
    for c in (rng.integers(0, P, (4, 1), dtype=np.uint64), ff.ext(5), ff.ext(*[P - 1] * 4)):
        if ff.ext_is_base(c):
            v = v[v != c[0, 0]]
        diff = np.zeros((4, v.size), dtype=np.uint64)
        diff[0] = (c[0, 0] + P - v) % P
        diff[1:] = c[1:]
        assert np.array_equal(ff.ext_inv_const_minus(c, v), ff.ext_inv(diff))
    with pytest.raises(ZeroDivisionError):
        ff.ext_inv_const_minus(ff.ext(7), np.array([3, 7], dtype=np.uint64))


@pytest.mark.parametrize("n", [3, 5000])
def test_reduce_matches_remainder(n: int) -> None:
    """Reduction by ⌊a/p⌋ (long arrays) or `%` (short ones) of any uint64 values."""
    rng = np.random.default_rng(n)
    a = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    a[:3] = [2**64 - 1, P, (P - 1) ** 2 * 4]
    want = [int(x) % P for x in a]
    assert ff.reduce(a.copy()).tolist() == want
    assert ff.mul(a % P, a % P).tolist() == [w * w % P for w in want]
