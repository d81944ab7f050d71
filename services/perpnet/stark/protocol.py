"""What prover and verifier compute identically: the statement header, the domain
sizes, the out-of-domain point, and the composition polynomial's value at it.

Constraint combination order (shared): transition constraints 0..T-1 then boundary
constraints T..T+B-1, weighted by successive powers of one extension challenge α.
The DEEP combination weights main columns, then auxiliary columns, then
composition chunks by successive powers of γ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perpnet.stark import field as ff
from perpnet.stark.air import FE, Air, Boundary, Frame
from perpnet.stark.errors import ParameterError
from perpnet.stark.field import GENERATOR, Arr, P
from perpnet.stark.params import ProofParams
from perpnet.stark.transcript import Transcript

SHIFT = GENERATOR
"""Every LDE and constraint-evaluation domain is the coset SHIFT·<w>; disjoint from
the trace domain, so zerofiers never vanish on it."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Sizes derived from an AIR and parameters."""

    n: int
    log_n: int
    lde_size: int
    ce_blowup: int
    """Constraint-evaluation domain size / n: the next power of two >= degree (>= 2)."""
    num_chunks: int
    """Composition polynomial pieces of degree < n: max(1, degree - 1)."""
    group: int
    """FRI folding factor = values per FRI-layer Merkle leaf (trace leaves hold one row)."""

    @staticmethod
    def of(air: Air, params: ProofParams) -> Layout:
        air.check_shape()
        n = air.trace_length
        d = air.transition_degree
        ce = 2
        while ce < d:
            ce *= 2
        if ce > params.blowup:
            raise ParameterError(
                f"transition degree {d} needs blowup >= {ce}, have {params.blowup}"
            )
        return Layout(
            n=n,
            log_n=n.bit_length() - 1,
            lde_size=n * params.blowup,
            ce_blowup=ce,
            num_chunks=max(1, d - 1),
            group=params.folding_factor,
        )


def start_transcript(air: Air, params: ProofParams) -> Transcript:
    """A transcript bound to the whole statement: parameters, AIR, shape, public input."""
    t = Transcript(b"perpnet.stark.v1")
    name = air.name
    pub = air.public_input_bytes()
    t.absorb(
        params.encode()
        + len(name).to_bytes(4, "big")
        + name
        + bytes([air.trace_length.bit_length() - 1])
        + air.width.to_bytes(4, "big")
        + air.aux_width.to_bytes(4, "big")
        + len(pub).to_bytes(8, "big")
        + pub
    )
    return t


def draw_ood_point(t: Transcript) -> Arr:
    """z in the extension but outside the base field (so outside every domain)."""
    while True:
        z = t.challenge_ext()
        if not ff.ext_is_base(z):
            return z


def check_boundaries(air: Air, bounds: Sequence[Boundary]) -> None:
    for b in bounds:
        limit = air.aux_width if b.aux else air.width
        if not (0 <= b.column < limit and 0 <= b.row < air.trace_length):
            raise ParameterError(f"boundary constraint out of range: {b}")
        if b.aux == isinstance(b.value, int):
            raise ParameterError(f"boundary value type does not match its column: {b}")


def boundary_value(b: Boundary) -> Arr:
    """The boundary value as a (4, 1) extension element."""
    if isinstance(b.value, int):
        return ff.ext(b.value)
    return b.value.reshape(4, 1) % ff.P64


def composition_at(
    air: Air,
    layout: Layout,
    main_z: Arr,
    main_zg: Arr,
    aux_z: Arr,
    aux_zg: Arr,
    challenges: Sequence[FE],
    alpha: Arr,
    z: Arr,
) -> Arr:
    """The composition polynomial at z from the claimed trace values (rows of 4)."""
    frame = Frame(
        cur=[FE.ext(r.reshape(4, 1)) for r in main_z],
        nxt=[FE.ext(r.reshape(4, 1)) for r in main_zg],
        aux_cur=[FE.ext(r.reshape(4, 1)) for r in aux_z],
        aux_nxt=[FE.ext(r.reshape(4, 1)) for r in aux_zg],
        challenges=challenges,
    )
    cons = air.transition(frame)
    bounds = air.boundaries(challenges)
    check_boundaries(air, bounds)
    apows = ff.ext_powers(alpha, len(cons) + len(bounds))
    n = layout.n
    g = ff.two_adic_root(layout.log_n)
    acc = ff.ext_zero()
    for i, c in enumerate(cons):
        acc = ff.ext_add(acc, ff.ext_mul(apows[:, i : i + 1], c.as_ext()[:, :1]))
    # transitions hold on rows 0..n-2: zerofier (z^n - 1)/(z - g^(n-1))
    zn_minus_1 = ff.ext_sub(ff.ext_pow(z, n), ff.ext(1))
    last = ff.ext_sub(z, ff.ext(pow(g, n - 1, P)))
    total = ff.ext_mul(acc, ff.ext_mul(last, ff.ext_inv(zn_minus_1)))
    # Boundary terms: Σ_row (Σ_b α_b·(cell_b - v_b)) / (z - g^row), one inverse per row.
    base = len(cons)
    by_row: dict[int, Arr] = {}
    for j, b in enumerate(bounds):
        cell = (aux_z if b.aux else main_z)[b.column].reshape(4, 1)
        num = ff.ext_mul(apows[:, base + j : base + j + 1], ff.ext_sub(cell, boundary_value(b)))
        by_row[b.row] = ff.ext_add(by_row.get(b.row, ff.ext_zero()), num)
    for row, num in by_row.items():
        den = ff.ext_sub(z, ff.ext(pow(g, row, P)))
        total = ff.ext_add(total, ff.ext_mul(num, ff.ext_inv(den)))
    return total


def recombine(parts: Arr) -> Arr:
    """Σ_j X^j · parts[j] for parts (4, 4): the value of an extension column whose four
    base-coefficient polynomials were evaluated separately (row j = component j)."""
    out = ff.ext_zero()
    for j in range(4):
        basis = np.zeros((4, 1), dtype=np.uint64)
        basis[j, 0] = 1
        out = ff.ext_add(out, ff.ext_mul(basis, parts[j].reshape(4, 1)))
    return out


def ood_combinations(ood: Arr, gp: Arr, w: int, a: int, k: int) -> tuple[Arr, Arr]:
    """G(zg) and F(z) from the out-of-domain values and the γ powers."""
    main_z, main_zg = ood[:w].T, ood[w : 2 * w].T  # (4, w)
    aux_z, aux_zg = ood[2 * w : 2 * w + a].T, ood[2 * w + a : 2 * w + 2 * a].T
    comp_z = ood[2 * w + 2 * a :].T
    coeffs = gp[:, : w + a]
    g_z = ff.ext_zero()
    g_zg = ff.ext_zero()
    for j in range(w + a):
        vz = main_z[:, j : j + 1] if j < w else aux_z[:, j - w : j - w + 1]
        vzg = main_zg[:, j : j + 1] if j < w else aux_zg[:, j - w : j - w + 1]
        g_z = ff.ext_add(g_z, ff.ext_mul(coeffs[:, j : j + 1], vz))
        g_zg = ff.ext_add(g_zg, ff.ext_mul(coeffs[:, j : j + 1], vzg))
    f_z = g_z
    for c in range(k):
        f_z = ff.ext_add(f_z, ff.ext_mul(gp[:, w + a + c : w + a + c + 1], comp_z[:, c : c + 1]))
    return g_zg, f_z


def _component_weights(weights: Arr) -> Arr:
    """(4, 4c) base-column weights for c extension columns stored as 4 base columns
    each (component e of column i at 4i + e): weight_i · X^e."""
    basis = np.eye(4, dtype=np.uint64)[:, None, :]  # X^e in column e
    return np.ascontiguousarray(ff.ext_mul(weights[:, :, None], basis).reshape(4, -1))


def deep_values(
    x: Arr, main: Arr, aux: Arr | None, comp: Arr, ood: Arr, gamma: Arr, z: Arr, zg: Arr
) -> Arr:
    """The DEEP composition D(x) = (F(x) - F(z))/(x - z) + (G(x) - G(zg))/(x - zg), (4, m),
    at base points x (m,) from the base columns there: main (w, m), aux (4a, m) or None,
    composition chunks (4k, m).

    The prover calls it on the whole LDE domain, the verifier on the queried points.
    G = Σ γ^j·column_j over main then aux columns, F = G + Σ γ^(w+a+c)·chunk_c; every
    sum is one exact matrix product over base columns.
    """
    w, k = main.shape[0], comp.shape[0] // 4
    a = 0 if aux is None else aux.shape[0] // 4
    gp = ff.ext_powers(gamma, w + a + k)
    g_x = ff.lincomb(np.ascontiguousarray(gp[:, :w]), main)
    if aux is not None:
        g_x = ff.ext_add(g_x, ff.lincomb(_component_weights(gp[:, w : w + a]), aux))
    f_x = ff.ext_add(g_x, ff.lincomb(_component_weights(gp[:, w + a :]), comp))
    g_zg, f_z = ood_combinations(ood, gp, w, a, k)
    return ff.ext_add(
        ff.ext_mul(ff.ext_sub(f_x, f_z), _inv_x_minus(x, z)),
        ff.ext_mul(ff.ext_sub(g_x, g_zg), _inv_x_minus(x, zg)),
    )


def _inv_x_minus(x: Arr, z: Arr) -> Arr:
    """1/(x − z) = −1/(z − x) for base points x and one extension element z."""
    return ff.neg(ff.ext_inv_const_minus(z, x))
