"""NTT, inverse NTT and coset low-degree extension against naive evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from perpnet.stark import field as ff
from perpnet.stark.field import P
from perpnet.stark.ntt import evaluate_coset, interpolate_coset, intt, ntt


def naive_eval(coeffs: list[int], x: int) -> int:
    return sum(c * pow(x, i, P) for i, c in enumerate(coeffs)) % P


@pytest.mark.parametrize("log_n", range(8))
def test_ntt_matches_naive_and_round_trips(log_n: int) -> None:
    n = 1 << log_n
    rng = np.random.default_rng(log_n)
    c = rng.integers(0, P, (3, n), dtype=np.uint64)
    w = ff.two_adic_root(log_n)
    got = ntt(c)
    for row in range(3):
        coeffs = [int(v) for v in c[row]]
        assert [int(v) for v in got[row]] == [naive_eval(coeffs, pow(w, i, P)) for i in range(n)]
    assert np.array_equal(intt(got), c)
    assert np.array_equal(ntt(c[0]), got[0])  # 1-D input


def test_large_round_trip_and_worst_case_values() -> None:
    n = 1 << 12
    c = np.full((2, n), P - 1, dtype=np.uint64)
    assert np.array_equal(intt(ntt(c)), c)
    rng = np.random.default_rng(1)
    d = rng.integers(0, P, (5, n), dtype=np.uint64)
    assert np.array_equal(intt(ntt(d)), d)


@pytest.mark.parametrize(("log_n", "blowup"), [(3, 2), (4, 4), (6, 8)])
def test_coset_lde_consistency(log_n: int, blowup: int) -> None:
    n = 1 << log_n
    size = n * blowup
    rng = np.random.default_rng(size)
    values = rng.integers(0, P, (2, n), dtype=np.uint64)
    coeffs = intt(values)
    lde = evaluate_coset(coeffs, size, 31)
    root = ff.two_adic_root(log_n + blowup.bit_length() - 1)
    for i in range(0, size, 7):
        assert int(lde[0, i]) == naive_eval([int(v) for v in coeffs[0]], 31 * pow(root, i, P) % P)
    # the extension interpolates back to a polynomial of degree < n
    back = interpolate_coset(lde, 31)
    assert np.array_equal(back[:, :n], coeffs)
    assert not back[:, n:].any()
    # the unshifted extension contains the original values at stride `blowup`
    plain = evaluate_coset(coeffs, size, 1)
    assert np.array_equal(plain[:, ::blowup], values)


def test_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        ntt(np.zeros((1, 6), dtype=np.uint64))
    with pytest.raises(ValueError):
        evaluate_coset(np.zeros((1, 8), dtype=np.uint64), 4, 31)
