"""The STARK verifier: replays the transcript and touches only the queried rows.

Work is O(queries · (width + log n)) hashes and field operations plus one
evaluation of the constraints at the out-of-domain point; no polynomial of trace
size is ever built. Every failure raises StarkVerificationError (the proof does not
prove this statement) or ProofFormatError (the bytes are not a proof at all).
"""

from __future__ import annotations

import numpy as np

from perpnet.stark import field as ff
from perpnet.stark import fri
from perpnet.stark.air import FE, Air
from perpnet.stark.errors import ParameterError, StarkVerificationError
from perpnet.stark.field import P
from perpnet.stark.merkle import leaf_bytes, verify_multiproof
from perpnet.stark.params import DEFAULT_PARAMS, ProofParams
from perpnet.stark.proof import Opening, Proof
from perpnet.stark.protocol import (
    SHIFT,
    Layout,
    composition_at,
    deep_values,
    draw_ood_point,
    start_transcript,
)


def verify(air: Air, proof: bytes | Proof, params: ProofParams = DEFAULT_PARAMS) -> None:
    """Accept (return None) or raise: `proof` shows a trace satisfying `air` exists."""
    p = proof if isinstance(proof, Proof) else Proof.decode(proof)
    if p.params != params:
        raise StarkVerificationError(
            f"proof parameters {p.params} differ from the verifier's {params}"
        )
    try:
        lay = Layout.of(air, params)
    except ParameterError as exc:
        raise StarkVerificationError(f"the AIR cannot be verified: {exc}") from None
    n, big_n, r = lay.n, lay.lde_size, lay.group
    w, a, k = air.width, air.aux_width, lay.num_chunks
    if p.log_trace_length != lay.log_n:
        raise StarkVerificationError(
            f"proof is for 2^{p.log_trace_length} rows, the AIR has {n} rows"
        )
    if (p.aux_root is None) != (a == 0) or (p.aux_open is None) != (a == 0):
        raise StarkVerificationError("auxiliary trace presence does not match the AIR")
    if p.ood.shape != (2 * w + 2 * a + k, 4):
        raise StarkVerificationError(f"expected {2 * w + 2 * a + k} out-of-domain values")
    rounds = fri.num_folds(lay.log_n, params)
    if len(p.fri_roots) != rounds or len(p.fri_open) != rounds:
        raise StarkVerificationError(f"expected {rounds} FRI layers")
    if p.final_poly.shape != (fri.final_size(lay.log_n, params), 4):
        raise StarkVerificationError("final FRI polynomial has the wrong size")

    t = start_transcript(air, params)
    t.absorb(p.main_root)
    challenges: list[FE] = []
    if p.aux_root is not None:
        challenges = [FE.ext(t.challenge_ext()) for _ in range(air.num_aux_challenges)]
        t.absorb(p.aux_root)
    alpha = t.challenge_ext()
    t.absorb(p.comp_root)
    z = draw_ood_point(t)
    t.absorb_felts(p.ood)
    gamma = t.challenge_ext()
    betas = []
    for root in p.fri_roots:
        t.absorb(root)
        betas.append(t.challenge_ext())
    t.absorb_felts(p.final_poly)
    if not t.check_grinding(p.pow_nonce, params.grinding_bits):
        raise StarkVerificationError("proof-of-work nonce is invalid")
    t.absorb(p.pow_nonce.to_bytes(8, "big"))
    queries = sorted(set(t.challenge_indices(params.num_queries, big_n)))

    # Out-of-domain consistency: constraints at z match the committed composition.
    ood = p.ood
    try:
        lhs = composition_at(
            air,
            lay,
            ood[:w],
            ood[w : 2 * w],
            ood[2 * w : 2 * w + a],
            ood[2 * w + a : 2 * w + 2 * a],
            challenges,
            alpha,
            z,
        )
    except ParameterError as exc:
        raise StarkVerificationError(f"the AIR is malformed: {exc}") from None
    zn = ff.ext_pow(z, n)
    rhs = ff.ext_zero()
    zpow = ff.ext_one()
    for c in range(k):
        rhs = ff.ext_add(rhs, ff.ext_mul(zpow, ood[2 * w + 2 * a + c].reshape(4, 1)))
        zpow = ff.ext_mul(zpow, zn)
    if not np.array_equal(lhs, rhs):
        raise StarkVerificationError("out-of-domain check failed: constraints do not hold")

    # The trace and composition rows at the queried positions (one leaf each).
    depth = big_n.bit_length() - 1
    _check_opening(p.main_open, p.main_root, depth, queries, w, "main trace")
    if p.aux_open is not None and p.aux_root is not None:
        _check_opening(p.aux_open, p.aux_root, depth, queries, 4 * a, "aux trace")
    _check_opening(p.comp_open, p.comp_root, depth, queries, 4 * k, "composition")

    # The DEEP composition at the queried points, computed from those rows; FRI
    # checks it against the committed layer 0.
    omega = ff.two_adic_root(lay.log_n + params.log_blowup)
    x = np.array([SHIFT * pow(omega, q, P) % P for q in queries], dtype=np.uint64)
    zg = ff.ext_mul(z, ff.ext(ff.two_adic_root(lay.log_n)))
    deep = deep_values(
        x,
        np.ascontiguousarray(p.main_open.values.T),
        None if p.aux_open is None else np.ascontiguousarray(p.aux_open.values.T),
        np.ascontiguousarray(p.comp_open.values.T),
        ood,
        gamma,
        z,
        zg,
    )
    fri.verify(
        deep,
        queries,
        big_n,
        SHIFT,
        betas,
        p.fri_roots,
        p.fri_open,
        np.ascontiguousarray(p.final_poly.T),
        r,
    )


def _check_opening(
    o: Opening, root: bytes, depth: int, queries: list[int], columns: int, what: str
) -> None:
    if o.values.shape != (len(queries), columns):
        raise StarkVerificationError(f"{what} opening has shape {o.values.shape}")
    verify_multiproof(root, depth, queries, leaf_bytes(o.values), o.nodes, what)
