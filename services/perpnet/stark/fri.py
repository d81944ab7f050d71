"""FRI low-degree test over the extension field, folding by 2, 4 or 8 per round.

A layer is the evaluation of a polynomial f on a coset s·<w_M> in natural order.
Folding by r with challenge β maps f(x) = Σ_k x^k f_k(x^r) to Σ_k β^k f_k(y) on
s^r·<w_M^r>: position j of the next layer comes from positions j + m·M/r of this
one, which is why every layer's commitment groups exactly those r values in one leaf.

Every layer 0..L-1 is committed, layer 0 being the DEEP composition itself; each
root is absorbed before that round's β is drawn. The last fold's result is sent as
a polynomial in the clear. A query is a position in layer 0; the verifier checks
the opened layer-0 value against the DEEP value it computes from the trace rows at
that position (verifier.py), then follows the position down the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perpnet.stark import field as ff
from perpnet.stark.errors import StarkProverError, StarkVerificationError
from perpnet.stark.field import P64, Arr, P
from perpnet.stark.merkle import MerkleTree, commit_columns, leaf_bytes, verify_multiproof
from perpnet.stark.ntt import interpolate_coset
from perpnet.stark.params import ProofParams
from perpnet.stark.transcript import Transcript


def num_folds(log_degree: int, params: ProofParams) -> int:
    """Rounds L >= 1 until at most final_poly_size coefficients remain."""
    log_final = params.final_poly_size.bit_length() - 1
    excess = max(0, log_degree - log_final)
    return max(1, -(-excess // params.log_folding))


def final_size(log_degree: int, params: ProofParams) -> int:
    return 1 << max(0, log_degree - num_folds(log_degree, params) * params.log_folding)


def _idft_matrix(r: int) -> list[list[int]]:
    """W[k][m] = ζ^(-mk)/r, with ζ a primitive r-th root of unity."""
    zeta_inv = ff.inv(ff.two_adic_root(r.bit_length() - 1))
    r_inv = ff.inv(r)
    return [[pow(zeta_inv, m * k, P) * r_inv % P for m in range(r)] for k in range(r)]


def fold(cosets: Arr, xinv: Arr, beta: Arr) -> Arr:
    """Fold (4, r, k) coset values (slot m holds f(x·ζ^m)) into (4, k) values.

    f_k(x^r) = x^(-k)/r · Σ_m ζ^(-mk) f(x·ζ^m), and the result is Σ_k (β/x)^k · x^k f_k.
    """
    r = cosets.shape[1]
    w = _idft_matrix(r)
    parts = []
    for k in range(r):
        acc = np.zeros((4, cosets.shape[2]), dtype=np.uint64)
        for m in range(r):
            acc += cosets[:, m, :] * np.uint64(w[k][m])
            ff.reduce(acc)
        parts.append(acc)
    y = ff.ext_mul_base(beta, xinv)  # β/x, shape (4, k)
    out: Arr = parts[r - 1]
    for k in range(r - 2, -1, -1):
        out = ff.ext_add(ff.ext_mul(out, y), parts[k])
    return out


@dataclass(slots=True)
class FriCommitment:
    layers: list[tuple[Arr, MerkleTree]]
    """Committed layers 0..L-1: values (4, M_l) and their tree."""
    final_poly: Arr
    """(4, final_size) coefficients of the last fold, lowest degree first."""


def commit(
    values: Arr,
    shift: int,
    log_degree: int,
    params: ProofParams,
    transcript: Transcript,
    strict: bool = True,
) -> FriCommitment:
    """Commit phase for (4, N) evaluations on shift·<w_N> of a polynomial of degree
    < 2^log_degree. With strict, a higher degree raises instead of being truncated."""
    r = params.folding_factor
    rounds = num_folds(log_degree, params)
    cur = values
    sh = shift
    layers: list[tuple[Arr, MerkleTree]] = []
    for _ in range(rounds):
        tree = commit_columns(cur, r)
        transcript.absorb(tree.root)
        layers.append((cur, tree))
        beta = transcript.challenge_ext()
        m = cur.shape[1]
        xinv = _domain_inverses(sh, m, m // r)
        cur = fold(cur.reshape(4, r, m // r), xinv, beta)
        sh = pow(sh, r, P)
    coeffs = interpolate_coset(cur, sh)
    size = final_size(log_degree, params)
    if strict and np.any(coeffs[:, size:]):
        raise StarkProverError("FRI: the DEEP composition is not of the expected degree")
    final = np.ascontiguousarray(coeffs[:, :size])
    transcript.absorb_felts(final.T)
    return FriCommitment(layers, final)


def _domain_inverses(shift: int, m: int, count: int) -> Arr:
    """1/(shift·w_m^j) for j < count."""
    root_inv = ff.inv(ff.two_adic_root(m.bit_length() - 1))
    return ff.powers(root_inv, count) * np.uint64(ff.inv(shift)) % P64


def _point_inverses(shift: int, m: int, positions: Sequence[int]) -> Arr:
    root = ff.two_adic_root(m.bit_length() - 1)
    return np.array(
        [ff.inv(shift * pow(root, j, P)) for j in positions],
        dtype=np.uint64,
    )


def eval_poly_at_base(coeffs: Arr, x: Arr) -> Arr:
    """Extension-coefficient polynomial (4, d) at base points x (k,), as (4, k)."""
    out = np.zeros((4, x.shape[0]), dtype=np.uint64)
    for i in range(coeffs.shape[1] - 1, -1, -1):
        out = (out * x[None, :] + coeffs[:, i : i + 1]) % P64
    return out


@dataclass(frozen=True, slots=True)
class FriLayerOpening:
    values: Arr
    """(k, r, 4): the opened leaves, sorted by leaf index."""
    nodes: list[bytes]


def open_layers(fc: FriCommitment, queries: Sequence[int], r: int) -> list[FriLayerOpening]:
    """Openings of every layer for sorted distinct layer-0 positions."""
    out = []
    positions = list(queries)
    for values, tree in fc.layers:
        m = values.shape[1]
        leaves = sorted({p % (m // r) for p in positions})
        rows = values.reshape(4, r, m // r)[:, :, leaves].transpose(2, 1, 0)
        out.append(FriLayerOpening(np.ascontiguousarray(rows), tree.open(leaves)))
        positions = leaves
    return out


def verify(
    values: Arr,
    queries: Sequence[int],
    domain_size: int,
    shift: int,
    betas: Sequence[Arr],
    roots: Sequence[bytes],
    openings: Sequence[FriLayerOpening],
    final_poly: Arr,
    r: int,
) -> None:
    """Check the query phase. values (4, k) are the layer-0 values the verifier derived
    itself at the sorted distinct positions `queries` of the domain shift·<w_N>; each
    must equal the committed layer-0 value there. Raises StarkVerificationError."""
    m = domain_size
    sh = shift
    positions = list(queries)
    vals = values
    for layer, (root, opening, beta) in enumerate(zip(roots, openings, betas, strict=True)):
        half = m // r
        leaves = sorted({p % half for p in positions})
        if opening.values.shape != (len(leaves), r, 4):
            raise StarkVerificationError(f"FRI layer {layer}: wrong number of opened values")
        verify_multiproof(
            root,
            half.bit_length() - 1,
            leaves,
            leaf_bytes(opening.values),
            opening.nodes,
            f"FRI layer {layer}",
        )
        row_of = {leaf: i for i, leaf in enumerate(leaves)}
        rows = np.array([row_of[p % half] for p in positions], dtype=np.int64)
        slots = np.array([p // half for p in positions], dtype=np.int64)
        opened = opening.values[rows]  # (q, r, 4)
        claimed = opened[np.arange(len(positions)), slots].T  # (4, q)
        if not np.array_equal(claimed, vals):
            what = "the DEEP composition" if layer == 0 else "folding"
            raise StarkVerificationError(f"FRI layer {layer}: {what} is inconsistent")
        positions = [p % half for p in positions]
        vals = fold(opened.transpose(2, 1, 0), _point_inverses(sh, m, positions), beta)
        m = half
        sh = pow(sh, r, P)
    root_m = ff.two_adic_root(m.bit_length() - 1)
    xs = np.array([sh * pow(root_m, p, P) % P for p in positions], dtype=np.uint64)
    if not np.array_equal(eval_poly_at_base(final_poly, xs), vals):
        raise StarkVerificationError("FRI: the final polynomial does not match the last fold")
