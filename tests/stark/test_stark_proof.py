"""End to end: completeness, soundness probes, tampering and malformed encodings."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import pytest

from perpnet.stark import (
    DEFAULT_PARAMS,
    FE,
    Air,
    Boundary,
    Frame,
    ParameterError,
    Proof,
    ProofFormatError,
    ProofParams,
    StarkError,
    StarkProverError,
    StarkVerificationError,
    fri,
    protocol,
    prove,
    verify,
)
from perpnet.stark.examples import FibonacciAir, RegisterPermutationAir
from perpnet.stark.field import P64, P

FAST = ProofParams(num_queries=20, grinding_bits=4)


def fib(n: int) -> tuple[FibonacciAir, np.ndarray]:
    trace = FibonacciAir.trace(n)
    return FibonacciAir(n, int(trace[1, -1])), trace


@cache
def perm_proof() -> tuple[RegisterPermutationAir, np.ndarray, bytes]:
    air, trace = RegisterPermutationAir.example(64, width=8)
    return air, trace, prove(air, trace, FAST)


@pytest.mark.parametrize(
    "params",
    [
        DEFAULT_PARAMS,
        ProofParams(blowup=2, num_queries=30, folding_factor=2, grinding_bits=2),
        ProofParams(blowup=8, num_queries=12, folding_factor=8, grinding_bits=0, final_poly_size=1),
        ProofParams(blowup=4, num_queries=8, folding_factor=4, final_poly_size=1024),
    ],
)
@pytest.mark.parametrize("n", [8, 64, 1024])
def test_fibonacci_completeness(params: ProofParams, n: int) -> None:
    air, trace = fib(n)
    proof = prove(air, trace, params)
    verify(air, proof, params)
    assert prove(air, trace, params) == proof  # deterministic
    assert Proof.decode(proof).encode() == proof  # canonical round trip


@pytest.mark.parametrize("n", [8, 256])
def test_permutation_completeness(n: int) -> None:
    air, trace = RegisterPermutationAir.example(n, width=6, seed=b"t%d" % n)
    verify(air, prove(air, trace, FAST), FAST)


def test_representative_width_verifies() -> None:
    air, trace = RegisterPermutationAir.example(1024, width=40)
    timings: dict[str, float] = {}
    proof = prove(air, trace, timings=timings)
    verify(air, proof)
    assert {"trace_lde", "merkle_commit", "composition", "deep", "fri", "queries"} <= set(timings)


# ------------------------------------------------------------------ soundness probes


def test_wrong_trace_refused_by_prover() -> None:
    air, trace = fib(64)
    bad = trace.copy()
    bad[0, 10] += 1
    with pytest.raises(StarkProverError, match="transition constraint 0 fails at row 9"):
        prove(air, bad, FAST)
    wrong = FibonacciAir(64, 12345)
    with pytest.raises(StarkProverError, match="boundary"):
        prove(wrong, trace, FAST)


@pytest.mark.parametrize("row", [0, 10, 63])
def test_cheating_prover_rejected(row: int) -> None:
    """A prover that skips its checks and truncates high-degree parts is caught."""
    air, trace = fib(64)
    bad = trace.copy()
    bad[1, row] = (int(bad[1, row]) + 1) % P
    proof = prove(air, bad, FAST, strict=False)
    with pytest.raises(StarkVerificationError):
        verify(air, proof, FAST)


def test_false_public_output_rejected() -> None:
    air, trace = fib(64)
    liar = FibonacciAir(64, air.result + 1)
    proof = prove(liar, trace, FAST, strict=False)
    with pytest.raises(StarkVerificationError):
        verify(liar, proof, FAST)
    honest = prove(air, trace, FAST)
    with pytest.raises(StarkVerificationError):
        verify(liar, honest, FAST)


def test_permutation_binding() -> None:
    air, trace, proof = perm_proof()
    verify(air, proof, FAST)
    # changing any public input (a list entry, a seed, the output) is rejected
    pairs = air.pairs.copy()
    pairs[1, 5] = (pairs[1, 5] + 1) % P
    other = RegisterPermutationAir(air.trace_length, air.width, air.seeds, air.output, pairs)
    with pytest.raises(StarkVerificationError):
        verify(other, proof, FAST)
    seeds = air.seeds.copy()
    seeds[0] ^= 1
    with pytest.raises(StarkVerificationError):
        verify(RegisterPermutationAir(64, air.width, seeds, air.output, air.pairs), proof, FAST)
    # a trace whose keys are not a permutation of the list cannot be proven honestly...
    bad = trace.copy()
    bad[1, 3] = (int(bad[1, 3]) + 1) % P
    with pytest.raises(StarkProverError, match="boundary constraint on aux column 0"):
        prove(air, bad, FAST)
    # ...nor by skipping the checks
    with pytest.raises(StarkVerificationError):
        verify(air, prove(air, bad, FAST, strict=False), FAST)


def test_deep_layer_bound_to_the_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """FRI layer 0 is committed separately from the trace: a prover that commits a
    different low-degree function there (D + 1 passes FRI) is caught at the queries."""
    air, trace = fib(64)

    def shifted(*args: np.ndarray | None) -> np.ndarray:
        d = protocol.deep_values(*args)  # type: ignore[arg-type]
        d[0] = (d[0] + 1) % P64
        return d

    monkeypatch.setattr("perpnet.stark.prover.deep_values", shifted)
    proof = prove(air, trace, FAST)
    with pytest.raises(StarkVerificationError, match="layer 0: the DEEP composition"):
        verify(air, proof, FAST)


def test_openings_are_single_rows() -> None:
    """Version 2: each query opens one row of each trace tree and one leaf of every
    FRI layer, layer 0 (the DEEP composition) included."""
    air, _, proof = perm_proof()
    p = Proof.decode(proof)
    kq = p.main_open.values.shape[0]  # distinct queried positions
    assert 1 <= kq <= FAST.num_queries
    assert p.main_open.values.shape == (kq, air.width)
    assert p.aux_open is not None and p.aux_open.values.shape == (kq, 4 * air.aux_width)
    assert p.comp_open.values.shape == (kq, 4)  # degree 2: one chunk
    rounds = fri.num_folds(p.log_trace_length, FAST)
    assert len(p.fri_roots) == len(p.fri_open) == rounds
    assert p.fri_open[0].values.shape[1:] == (FAST.folding_factor, 4)


def test_params_mismatch_rejected() -> None:
    air, trace = fib(64)
    weak = ProofParams(num_queries=2, grinding_bits=0)
    proof = prove(air, trace, weak)
    verify(air, proof, weak)
    with pytest.raises(StarkVerificationError, match="parameters"):
        verify(air, proof)


def test_trace_length_mismatch_rejected() -> None:
    air, trace = fib(64)
    proof = prove(air, trace, FAST)
    air128, _ = fib(128)
    with pytest.raises(StarkVerificationError):
        verify(air128, proof, FAST)


# ------------------------------------------------------------------ tampering


def test_every_byte_flip_rejected() -> None:
    air, trace = fib(32)
    params = ProofParams(num_queries=8, grinding_bits=2, final_poly_size=4)
    proof = prove(air, trace, params)
    verify(air, proof, params)
    for pos in range(len(proof)):
        for mask in (0x01, 0x80):
            bad = bytearray(proof)
            bad[pos] ^= mask
            with pytest.raises(StarkError):
                verify(air, bytes(bad), params)


def test_byte_flips_with_aux_trace_rejected() -> None:
    air, _, proof = perm_proof()
    rng = np.random.default_rng(5)
    for pos in sorted(set(rng.integers(0, len(proof), 300).tolist())):
        bad = bytearray(proof)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises((ProofFormatError, StarkVerificationError)):
            verify(air, bytes(bad), FAST)


def test_malformed_encodings() -> None:
    air, trace = fib(32)
    proof = prove(air, trace, FAST)
    cases = {
        b"": "truncated",
        proof[:-1]: "truncated",
        proof + b"\0": "trailing",
        b"XXSTARK" + proof[7:]: "bad magic",
        proof[:7] + b"\x09" + proof[8:]: "version",
        proof[:7] + b"\x01" + proof[8:]: "unsupported proof version 1",
        proof[:20]: "truncated",
    }
    for data, msg in cases.items():
        with pytest.raises(ProofFormatError, match=msg):
            verify(air, data, FAST)
    # a field element >= p
    p = Proof.decode(proof)
    off = proof.index(p.ood.astype("<u4").tobytes()[:8])
    bad = bytearray(proof)
    bad[off : off + 4] = (P).to_bytes(4, "little")
    with pytest.raises(ProofFormatError, match="not reduced"):
        Proof.decode(bytes(bad))
    with pytest.raises(ProofFormatError):
        Proof.decode("not bytes")  # type: ignore[arg-type]
    # a trace opening of rank 3 (version 1's (leaves, group, columns))
    at = _main_opening_offset(p)
    assert proof[at] == 2
    with pytest.raises(ProofFormatError, match="main opening: expected 2 dimensions"):
        Proof.decode(proof[:at] + b"\x03" + proof[at + 1 :])


def _main_opening_offset(p: Proof) -> int:
    """Where the main opening starts (proof.py's layout): header, roots, tensors, nonce."""
    roots = 32 * (2 + (p.aux_root is not None) + len(p.fri_roots))
    return 7 + 1 + 5 + 1 + 1 + roots + (9 + 4 * p.ood.size) + 1 + (9 + 4 * p.final_poly.size) + 8


def test_bad_inputs_to_prover() -> None:
    air, trace = fib(64)
    with pytest.raises(ParameterError):
        prove(air, trace[:, :32], FAST)
    bad = trace.astype(object)
    bad[0, 0] = P
    with pytest.raises(ParameterError):
        prove(air, bad, FAST)
    with pytest.raises(ParameterError):
        ProofParams(blowup=3)
    with pytest.raises(ParameterError):
        prove(FibonacciAir(6, 1), np.zeros((2, 6), dtype=np.uint64), FAST)


class CubeAir(Air):
    """x' = x^3: degree 3 needs a constraint-evaluation blowup of 4 and two chunks."""

    name = b"test.cube"
    width = 1
    transition_degree = 3

    def __init__(self, n: int, start: int, end: int) -> None:
        self.trace_length, self.start, self.end = n, start, end

    def public_input_bytes(self) -> bytes:
        return self.start.to_bytes(4, "little") + self.end.to_bytes(4, "little")

    def transition(self, frame: Frame) -> list[FE]:
        return [frame.nxt[0] - frame.cur[0] ** 3]

    def boundaries(self, challenges: Sequence[FE]) -> list[Boundary]:
        return [Boundary(0, 0, self.start), Boundary(0, self.trace_length - 1, self.end)]


def test_higher_degree_air() -> None:
    n = 32
    xs = [3]
    for _ in range(n - 1):
        xs.append(pow(xs[-1], 3, P))
    air = CubeAir(n, 3, xs[-1])
    trace = np.array([xs], dtype=np.uint64)
    verify(air, prove(air, trace, FAST), FAST)
    with pytest.raises(ParameterError, match="blowup"):
        prove(air, trace, ProofParams(blowup=2))
    understated = CubeAir(n, 3, xs[-1])
    understated.transition_degree = 2
    with pytest.raises(StarkProverError, match="degree too high"):
        prove(understated, trace, FAST)


def test_bench_runs_and_is_json() -> None:
    import json

    from perpnet.stark import bench

    out = bench.run(sizes=(32, 64), width=6, repeats=1, params=FAST)
    text = json.dumps(out)
    assert '"proof_bytes"' in text and len(out["results"]) == 2
    assert set(bench.PHASES) == set(out["results"][0]["phases_s"])
