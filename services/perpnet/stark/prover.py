"""The STARK prover: trace -> commitments -> composition -> DEEP -> FRI -> openings.

Deterministic: the same AIR, trace and parameters give the same bytes. Every
phase is whole-array NumPy work; Python loops run only over constraints, FRI
rounds and queries. `timings`, when given, receives seconds per phase.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from perpnet.stark import field as ff
from perpnet.stark import fri
from perpnet.stark.air import FE, Air, eval_transitions
from perpnet.stark.errors import ParameterError, StarkProverError
from perpnet.stark.field import P64, Arr, P
from perpnet.stark.merkle import MerkleTree, commit_columns, open_rows
from perpnet.stark.ntt import evaluate_coset, interpolate_coset, intt
from perpnet.stark.params import DEFAULT_PARAMS, ProofParams
from perpnet.stark.proof import Opening, Proof
from perpnet.stark.protocol import (
    SHIFT,
    Layout,
    boundary_value,
    check_boundaries,
    deep_values,
    draw_ood_point,
    recombine,
    start_transcript,
)


class _Clock:
    __slots__ = ("last", "out")

    def __init__(self, out: dict[str, float] | None) -> None:
        self.out = out
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        if self.out is not None:
            self.out[phase] = self.out.get(phase, 0.0) + now - self.last
        self.last = now


def prove(
    air: Air,
    trace: Arr | Sequence[Sequence[int]],
    params: ProofParams = DEFAULT_PARAMS,
    *,
    timings: dict[str, float] | None = None,
    strict: bool = True,
) -> bytes:
    """Prove that `trace` ((width, n) column-major) satisfies `air`; the encoded proof.

    Raises StarkProverError if it does not. strict=False skips that check and
    truncates the too-high-degree polynomials instead -- only for soundness tests,
    which must see such proofs rejected.
    """
    return prove_proof(air, trace, params, timings=timings, strict=strict).encode()


def prove_proof(
    air: Air,
    trace: Arr | Sequence[Sequence[int]],
    params: ProofParams = DEFAULT_PARAMS,
    *,
    timings: dict[str, float] | None = None,
    strict: bool = True,
) -> Proof:
    clock = _Clock(timings)
    lay = Layout.of(air, params)
    n, big_n, r = lay.n, lay.lde_size, lay.group
    main = _as_trace(air, trace)
    t = start_transcript(air, params)

    main_coeffs = intt(main)
    main_lde = evaluate_coset(main_coeffs, big_n, SHIFT)
    clock.lap("trace_lde")
    main_tree = commit_columns(main_lde, 1)
    t.absorb(main_tree.root)
    clock.lap("merkle_commit")

    challenges: list[FE] = []
    aux_lde: Arr | None = None
    aux_coeffs: Arr | None = None
    aux_tree: MerkleTree | None = None
    aux_trace: Arr | None = None
    if air.aux_width:
        challenges = [FE.ext(t.challenge_ext()) for _ in range(air.num_aux_challenges)]
        aux_trace = np.asarray(air.build_aux_trace(main, challenges), dtype=np.uint64)
        if aux_trace.shape != (air.aux_width, 4, n) or np.any(aux_trace >= P64):
            raise ParameterError("build_aux_trace must return reduced (aux_width, 4, n)")
        flat = aux_trace.reshape(4 * air.aux_width, n)
        aux_coeffs = intt(flat)
        aux_lde = evaluate_coset(aux_coeffs, big_n, SHIFT)
        clock.lap("trace_lde")
        aux_tree = commit_columns(aux_lde, 1)
        t.absorb(aux_tree.root)
        clock.lap("merkle_commit")

    alpha = t.challenge_ext()
    comp_coeffs, excess = _composition(air, lay, main_lde, aux_lde, challenges, alpha)
    if strict and excess:
        # The quotients are polynomials of the expected degree iff every constraint
        # holds (up to a negligible chance over α), so the trace itself is only
        # checked, to name the broken constraint, when they are not.
        check_trace(air, main, aux_trace, challenges)
        raise StarkProverError(
            "composition polynomial degree too high: transition_degree is understated"
        )
    comp_lde = evaluate_coset(comp_coeffs, big_n, SHIFT)
    clock.lap("composition")
    comp_tree = commit_columns(comp_lde, 1)
    t.absorb(comp_tree.root)
    clock.lap("merkle_commit")

    z = draw_ood_point(t)
    g = ff.two_adic_root(lay.log_n)
    zg = ff.ext_mul(z, ff.ext(g))
    pts = np.concatenate([ff.ext_powers(z, n).T, ff.ext_powers(zg, n).T], axis=1)  # (n, 8)
    main_at = ff.matmul(main_coeffs, pts)
    ood_rows = [main_at[:, :4], main_at[:, 4:]]
    if aux_coeffs is not None:
        aux_at = ff.matmul(aux_coeffs, pts).reshape(air.aux_width, 4, 8)
        ood_rows.append(np.stack([recombine(a[:, :4])[:, 0] for a in aux_at]))
        ood_rows.append(np.stack([recombine(a[:, 4:])[:, 0] for a in aux_at]))
    comp_at = ff.matmul(comp_coeffs, pts[:, :4]).reshape(lay.num_chunks, 4, 4)
    ood_rows.append(np.stack([recombine(c)[:, 0] for c in comp_at]))
    ood = np.ascontiguousarray(np.concatenate(ood_rows, axis=0))
    t.absorb_felts(ood)
    gamma = t.challenge_ext()
    root = ff.two_adic_root(lay.log_n + params.log_blowup)
    x = _coset_points(root, big_n)
    deep = deep_values(x, main_lde, aux_lde, comp_lde, ood, gamma, z, zg)
    clock.lap("deep")

    fc = fri.commit(deep, SHIFT, lay.log_n, params, t, strict=strict)
    clock.lap("fri")
    nonce = t.grind(params.grinding_bits)
    t.absorb(nonce.to_bytes(8, "big"))
    clock.lap("grinding")

    queries = sorted(set(t.challenge_indices(params.num_queries, big_n)))
    proof = Proof(
        params=params,
        log_trace_length=lay.log_n,
        main_root=main_tree.root,
        aux_root=None if aux_tree is None else aux_tree.root,
        comp_root=comp_tree.root,
        ood=ood,
        fri_roots=[tree.root for _, tree in fc.layers],
        final_poly=np.ascontiguousarray(fc.final_poly.T),
        pow_nonce=nonce,
        main_open=Opening(open_rows(main_lde, queries), main_tree.open(queries)),
        aux_open=None
        if aux_tree is None or aux_lde is None
        else Opening(open_rows(aux_lde, queries), aux_tree.open(queries)),
        comp_open=Opening(open_rows(comp_lde, queries), comp_tree.open(queries)),
        fri_open=fri.open_layers(fc, queries, r),
    )
    clock.lap("queries")
    return proof


def _coset_points(root: int, size: int) -> Arr:
    """SHIFT·root^i for i < size: the points of an LDE or constraint-evaluation coset."""
    return ff.reduce(ff.powers(root, size) * np.uint64(SHIFT))


def _felt(value: int) -> Arr:
    """A reduced element as a 0-d array (broadcasts like a scalar)."""
    return np.array(value % P, dtype=np.uint64)


def _as_trace(air: Air, trace: Arr | Sequence[Sequence[int]]) -> Arr:
    arr = np.asarray(trace)
    if arr.shape != (air.width, air.trace_length):
        raise ParameterError(
            f"trace must be (width={air.width}, rows={air.trace_length}), got {arr.shape}"
        )
    if arr.dtype != np.uint64:
        if arr.dtype.kind not in "iuO":
            raise ParameterError("trace cells must be integers")
        if arr.dtype.kind == "i" and np.any(arr < 0):
            raise ParameterError("trace cells must be canonical field elements")
        arr = arr.astype(object)
        if any(int(v) >= P or int(v) < 0 for v in arr.ravel()):
            raise ParameterError("trace cells must be canonical field elements (< p)")
        arr = arr.astype(np.uint64)
    elif np.any(arr >= P64):
        raise ParameterError("trace cells must be canonical field elements (< p)")
    return np.ascontiguousarray(arr)


def check_trace(air: Air, main: Arr, aux: Arr | None, challenges: Sequence[FE]) -> None:
    """Evaluate every constraint on the trace itself; name the first one broken."""
    n = air.trace_length
    cons = eval_transitions(
        air,
        main,
        np.roll(main, -1, axis=1),
        aux,
        None if aux is None else np.roll(aux, -1, axis=2),
        challenges,
    )
    for i, c in enumerate(cons):
        v = np.broadcast_to(c.v, (4, n) if c.is_ext else (n,))
        bad = np.nonzero(v[..., : n - 1].reshape(-1, n - 1).any(axis=0))[0]
        if bad.size:
            raise StarkProverError(f"transition constraint {i} fails at row {int(bad[0])}")
    bounds = air.boundaries(challenges)
    check_boundaries(air, bounds)
    for b in bounds:
        if b.aux:
            if aux is None:
                raise StarkProverError("aux boundary without an aux trace")
            cell = aux[b.column, :, b.row].reshape(4, 1)
        else:
            cell = ff.ext(int(main[b.column, b.row]))
        if not np.array_equal(cell, boundary_value(b)):
            raise StarkProverError(
                f"boundary constraint on {'aux ' if b.aux else ''}column {b.column} "
                f"row {b.row} fails"
            )


def _composition(
    air: Air,
    lay: Layout,
    main_lde: Arr,
    aux_lde: Arr | None,
    challenges: Sequence[FE],
    alpha: Arr,
) -> tuple[Arr, bool]:
    """Coefficients (4·chunks, n) of the composition polynomial's chunks, truncated,
    and whether the truncation dropped anything (some quotient is not a polynomial
    of degree < chunks·n)."""
    n, ce = lay.n, lay.ce_blowup
    m = ce * n
    stride = lay.lde_size // m
    cur = np.ascontiguousarray(main_lde[:, ::stride])
    nxt = np.roll(cur, -ce, axis=1)
    aux_cur = aux_nxt = None
    if aux_lde is not None:
        aux_cur = np.ascontiguousarray(aux_lde[:, ::stride]).reshape(air.aux_width, 4, m)
        aux_nxt = np.roll(aux_cur, -ce, axis=2)
    cons = eval_transitions(air, cur, nxt, aux_cur, aux_nxt, challenges)
    bounds = air.boundaries(challenges)
    check_boundaries(air, bounds)
    apows = ff.ext_powers(alpha, len(cons) + len(bounds))

    base_idx = [i for i, c in enumerate(cons) if not c.is_ext]
    acc = ff.ext_zero(m)
    if base_idx:
        rows = np.empty((len(base_idx), m), dtype=np.float64)  # lincomb's input type
        for j, i in enumerate(base_idx):
            rows[j] = cons[i].v
        acc = ff.lincomb(apows[:, base_idx], rows)
    for i, c in enumerate(cons):
        if c.is_ext:
            acc = ff.ext_add(acc, ff.ext_mul(apows[:, i : i + 1], c.v))

    x = _coset_points(ff.two_adic_root(lay.log_n + ce.bit_length() - 1), m)
    g = ff.two_adic_root(lay.log_n)
    # 1/Z(x) = (x - g^(n-1)) / (x^n - 1); x^n repeats with period ce on this coset.
    xn = [
        pow(SHIFT, n, P) * pow(ff.two_adic_root(ce.bit_length() - 1), i, P) % P for i in range(ce)
    ]
    inv_xn = np.tile(np.array([ff.inv(v - 1) for v in xn], dtype=np.uint64), n)
    zinv = ff.reduce(ff.sub(x, _felt(pow(g, n - 1, P))) * inv_xn)
    total = ff.ext_mul_base(acc, zinv)

    base = len(cons)
    by_row: dict[int, list[int]] = {}
    for j, b in enumerate(bounds):
        by_row.setdefault(b.row, []).append(j)
    for row, js in sorted(by_row.items()):
        coef = np.zeros((4, air.width), dtype=np.uint64)
        num = ff.ext_zero(m)
        const = ff.ext_zero()
        for j in js:
            b = bounds[j]
            a = apows[:, base + j : base + j + 1]
            const = ff.ext_add(const, ff.ext_mul(a, boundary_value(b)))
            if b.aux:
                assert aux_cur is not None
                num = ff.ext_add(num, ff.ext_mul(a, aux_cur[b.column]))
            else:
                coef[:, b.column] = (coef[:, b.column] + a[:, 0]) % P64
        used = np.flatnonzero(coef.any(axis=0))  # the few columns pinned on this row
        if used.size:
            num = ff.ext_add(num, ff.lincomb(coef[:, used], cur[used]))
        num = ff.ext_sub(num, const)
        den_inv = ff.batch_inv(ff.sub(x, _felt(pow(g, row, P))))
        total = ff.ext_add(total, ff.ext_mul_base(num, den_inv))

    coeffs = interpolate_coset(total, SHIFT)  # (4, m)
    k = lay.num_chunks
    excess = bool(np.any(coeffs[:, k * n :]))
    chunks = coeffs[:, : k * n].reshape(4, k, n).transpose(1, 0, 2).reshape(4 * k, n)
    return np.ascontiguousarray(chunks), excess
