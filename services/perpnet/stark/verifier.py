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
    draw_ood_point,
    inv_x_minus,
    ood_combinations,
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
    if len(p.fri_roots) != rounds - 1 or len(p.fri_open) != rounds - 1:
        raise StarkVerificationError(f"expected {rounds - 1} FRI layers")
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
    for i in range(rounds):
        betas.append(t.challenge_ext())
        if i < rounds - 1:
            t.absorb(p.fri_roots[i])
    t.absorb_felts(p.final_poly)
    if not t.check_grinding(p.pow_nonce, params.grinding_bits):
        raise StarkVerificationError("proof-of-work nonce is invalid")
    t.absorb(p.pow_nonce.to_bytes(8, "big"))
    queries = sorted(set(t.challenge_indices(params.num_queries, lay.num_leaves)))

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

    # Openings of the trace and composition commitments at the queried leaves.
    depth = lay.num_leaves.bit_length() - 1
    _check_opening(p.main_open, p.main_root, depth, queries, (r, w), "main trace")
    if p.aux_open is not None and p.aux_root is not None:
        _check_opening(p.aux_open, p.aux_root, depth, queries, (r, 4 * a), "aux trace")
    _check_opening(p.comp_open, p.comp_root, depth, queries, (r, 4 * k), "composition")

    # DEEP composition at the 2·r·q points, computed from the opened rows.
    kq = len(queries)
    root = ff.two_adic_root(lay.log_n + params.log_blowup)
    pos = np.array([[q + m * lay.num_leaves for m in range(r)] for q in queries]).ravel()
    x = np.array([SHIFT * pow(root, int(i), P) % P for i in pos], dtype=np.uint64)
    gp = ff.ext_powers(gamma, w + a + k)
    main_rows = p.main_open.values.reshape(kq * r, w).T  # (w, q·r)
    g_x = ff.lincomb(np.ascontiguousarray(gp[:, :w]), np.ascontiguousarray(main_rows))
    if p.aux_open is not None:
        aux_rows = p.aux_open.values.reshape(kq * r, a, 4)
        for i in range(a):
            g_x = ff.ext_add(g_x, ff.ext_mul(gp[:, w + i : w + i + 1], aux_rows[:, i, :].T))
    comp_rows = p.comp_open.values.reshape(kq * r, k, 4)
    f_x = g_x
    for c in range(k):
        f_x = ff.ext_add(f_x, ff.ext_mul(gp[:, w + a + c : w + a + c + 1], comp_rows[:, c, :].T))
    g_zg, f_z = ood_combinations(ood, gp, w, a, k)
    zg = ff.ext_mul(z, ff.ext(ff.two_adic_root(lay.log_n)))
    deep = ff.ext_add(
        ff.ext_mul(ff.ext_sub(f_x, f_z), inv_x_minus(x, z)),
        ff.ext_mul(ff.ext_sub(g_x, g_zg), inv_x_minus(x, zg)),
    )
    cosets = deep.reshape(4, kq, r).transpose(0, 2, 1)
    fri.verify(
        cosets,
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
    o: Opening, root: bytes, depth: int, queries: list[int], shape: tuple[int, int], what: str
) -> None:
    if o.values.shape != (len(queries), *shape):
        raise StarkVerificationError(f"{what} opening has shape {o.values.shape}")
    verify_multiproof(root, depth, queries, leaf_bytes(o.values), o.nodes, what)
