"""Field and extension-field arithmetic against Python-int reference computations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from perpnet.stark import field as ff
from perpnet.stark.field import P

felt = st.integers(0, P - 1)
ext_elt = st.tuples(felt, felt, felt, felt)


def ref_ext_mul(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    out = [0] * 7
    for i in range(4):
        for j in range(4):
            out[i + j] += a[i] * b[j]
    return tuple((out[i] + (11 * out[i + 4] if i < 3 else 0)) % P for i in range(4))


def ext_of(t: tuple[int, ...]) -> np.ndarray:
    return ff.ext(*t)


def test_constants() -> None:
    assert P == 2013265921
    assert pow(11, (P - 1) // 2, P) == P - 1  # 11 is a non-residue: X^4 - 11 irreducible
    for k in range(ff.TWO_ADICITY + 1):
        w = ff.two_adic_root(k)
        assert pow(w, 1 << k, P) == 1
        assert k == 0 or pow(w, 1 << (k - 1), P) != 1
    assert (P**4).bit_length() - 1 == ff.EXT_BITS


@given(st.lists(st.tuples(felt, felt), min_size=1, max_size=50))
def test_base_ops(pairs: list[tuple[int, int]]) -> None:
    a = np.array([x for x, _ in pairs], dtype=np.uint64)
    b = np.array([y for _, y in pairs], dtype=np.uint64)
    assert ff.add(a, b).tolist() == [(x + y) % P for x, y in pairs]
    assert ff.sub(a, b).tolist() == [(x - y) % P for x, y in pairs]
    assert ff.mul(a, b).tolist() == [x * y % P for x, y in pairs]
    assert ff.neg(a).tolist() == [-x % P for x, _ in pairs]


@given(st.lists(st.integers(1, P - 1), min_size=1, max_size=40))
def test_batch_inverse(xs: list[int]) -> None:
    a = np.array(xs, dtype=np.uint64)
    assert (ff.mul(a, ff.batch_inv(a)) == 1).all()
    assert ff.inv(xs[0]) * xs[0] % P == 1


def test_inverse_of_zero_raises() -> None:
    import pytest

    with pytest.raises(ZeroDivisionError):
        ff.batch_inv(np.array([1, 0], dtype=np.uint64))
    with pytest.raises(ZeroDivisionError):
        ff.inv(P)


@settings(max_examples=60)
@given(ext_elt, ext_elt, ext_elt)
def test_ext_field_axioms(a: tuple[int, ...], b: tuple[int, ...], c: tuple[int, ...]) -> None:
    ea, eb, ec = ext_of(a), ext_of(b), ext_of(c)
    assert ff.ext_to_ints(ff.ext_mul(ea, eb)) == ref_ext_mul(a, b)
    assert np.array_equal(ff.ext_mul(ea, eb), ff.ext_mul(eb, ea))
    assert np.array_equal(ff.ext_mul(ff.ext_mul(ea, eb), ec), ff.ext_mul(ea, ff.ext_mul(eb, ec)))
    assert np.array_equal(
        ff.ext_mul(ea, ff.ext_add(eb, ec)), ff.ext_add(ff.ext_mul(ea, eb), ff.ext_mul(ea, ec))
    )
    assert np.array_equal(ff.ext_sub(ff.ext_add(ea, eb), eb), ea)
    if any(a):
        assert ff.ext_to_ints(ff.ext_mul(ea, ff.ext_inv(ea))) == (1, 0, 0, 0)


def test_ext_vectorised_matches_scalar() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, P, (4, 33), dtype=np.uint64)
    b = rng.integers(0, P, (4, 33), dtype=np.uint64)
    prod = ff.ext_mul(a, b)
    inv = ff.ext_inv(a)
    for i in range(33):
        x, y = tuple(int(v) for v in a[:, i]), tuple(int(v) for v in b[:, i])
        assert tuple(int(v) for v in prod[:, i]) == ref_ext_mul(x, y)
        assert ff.ext_to_ints(ff.ext_mul(a[:, i : i + 1], inv[:, i : i + 1])) == (1, 0, 0, 0)
    # running and total products
    cum = ff.ext_cumprod(a)
    acc = ff.ext_one()
    for i in range(33):
        acc = ff.ext_mul(acc, a[:, i : i + 1])
        assert np.array_equal(cum[:, i : i + 1], acc)
    assert np.array_equal(ff.ext_prod(a), acc)
    z = a[:, :1]
    pw = ff.ext_powers(z, 10)
    assert np.array_equal(pw[:, 7:8], ff.ext_pow(z, 7))


def test_matmul_and_lincomb_exact() -> None:
    rng = np.random.default_rng(3)
    for m, k, n in [(3, 5, 7), (4, 100, 9), (2, 5000, 3)]:
        a = rng.integers(0, P, (m, k), dtype=np.uint64)
        b = rng.integers(0, P, (k, n), dtype=np.uint64)
        ref = (a.astype(object) @ b.astype(object)) % P
        assert (ff.matmul(a, b).astype(object) == ref).all()
        assert (ff.lincomb(a, b).astype(object) == ref).all()
    worst = np.full((2, 200), P - 1, dtype=np.uint64)
    ref = (worst.astype(object) @ worst.T.astype(object)) % P
    assert (ff.lincomb(worst, worst.T.copy()).astype(object) == ref).all()
    assert (ff.matmul(worst, worst.T.copy()).astype(object) == ref).all()


def test_powers_and_to_field() -> None:
    assert ff.powers(3, 5).tolist() == [1, 3, 9, 27, 81]
    assert ff.to_field([P, -1, 5]).tolist() == [0, P - 1, 5]
