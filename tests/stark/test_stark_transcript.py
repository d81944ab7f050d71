"""Fiat–Shamir transcript: determinism, sensitivity, ranges, grinding."""

from __future__ import annotations

from perpnet.stark import field as ff
from perpnet.stark.params import DEFAULT_PARAMS, ProofParams, security_bits
from perpnet.stark.transcript import Transcript


def test_deterministic_and_sensitive() -> None:
    a, b, c = Transcript(b"d"), Transcript(b"d"), Transcript(b"d")
    for t in (a, b):
        t.absorb(b"root")
    c.absorb(b"rooT")
    x, y, z = a.challenge_ext(), b.challenge_ext(), c.challenge_ext()
    assert (x == y).all() and not (x == z).all()
    assert not (a.challenge_ext() == x).all()  # successive squeezes differ
    assert Transcript(b"e").state != Transcript(b"d").state


def test_challenges_in_range() -> None:
    t = Transcript(b"r")
    for _ in range(50):
        assert 0 <= t.challenge_base() < ff.P
        e = t.challenge_ext()
        assert e.shape == (4, 1) and (e < ff.P).all()
    idx = t.challenge_indices(100, 1 << 10)
    assert len(idx) == 100 and all(0 <= i < 1024 for i in idx)
    assert len(set(idx)) > 90


def test_grinding() -> None:
    t = Transcript(b"g")
    t.absorb(b"x")
    nonce = t.grind(10)
    assert t.check_grinding(nonce, 10)
    assert t.grind(0) == 0 and t.check_grinding(0, 0) and not t.check_grinding(1, 0)
    wrong = sum(t.check_grinding(i, 10) for i in range(nonce))
    assert wrong == 0


def test_security_bits() -> None:
    assert security_bits(DEFAULT_PARAMS) >= 96
    assert security_bits(DEFAULT_PARAMS, 1 << 14) >= 96
    assert security_bits(ProofParams(num_queries=10, grinding_bits=0)) == 20
    # capped by the challenge field once queries are plentiful
    assert security_bits(ProofParams(blowup=64, num_queries=100), 1 << 20) == 123 - 26
