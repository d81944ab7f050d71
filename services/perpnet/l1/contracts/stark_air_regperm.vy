#pragma version ~=0.4.3
"""
@title AIR evaluator for perpnet.stark.examples.RegisterPermutationAir
@notice Columns key, value, then m = width - 2 registers: s_i' = s_i·s_(i+1) + s_(i+2) + key;
        one auxiliary column Z with Z_(i+1) = Z_i·(γ - key_i - δ·value_i), Z_0 = 1 and
        Z_(n-1) = Π_j (γ - K_j - δ·V_j) over the public list. Public input: the m seeds,
        the output, then the n-1 keys and the n-1 values, each u32 little-endian.
        The grand product over the public list is the O(n) part of verification.
"""

import stark_lib as L

NAME: constant(Bytes[64]) = b"perpnet.example.register-permutation"
WIDTH: public(immutable(uint256))


@deploy
def __init__(width: uint256):
    assert width >= 5 and width <= L.MAX_WIDTH, "width"
    WIDTH = width


@internal
@view
def _log_n(public_input: Bytes[L.MAX_PUBLIC]) -> uint256:
    head: uint256 = 4 * (WIDTH - 2) + 4
    assert len(public_input) > head and (len(public_input) - head) % 8 == 0, "public input"
    n: uint256 = (len(public_input) - head) // 8 + 1
    for i: uint256 in range(3, 22):
        if n == 1 << i:
            return i
    raise "trace length must be a power of two in [8, 2^21]"


@internal
@pure
def _felt(public_input: Bytes[L.MAX_PUBLIC], o: uint256) -> uint256:
    v: uint256 = L.swap_lanes(convert(slice(public_input, o, 4), uint256))
    assert v < L.P, "public input not reduced modulo p"
    return v


@external
@view
def air_info() -> L.AirInfo:
    return L.AirInfo(name=NAME, width=WIDTH, aux_width=1, num_challenges=2, degree=2)


@external
@view
def evaluate(
    public_input: Bytes[L.MAX_PUBLIC],
    frame: DynArray[uint256, L.MAX_FRAME],
    challenges: DynArray[uint256, L.MAX_CHALLENGES],
) -> (DynArray[uint256, L.MAX_CONSTRAINTS], DynArray[L.Boundary, L.MAX_BOUNDARIES]):
    return self._evaluate(public_input, frame, challenges)


@external
@view
def check(
    public_input: Bytes[L.MAX_PUBLIC],
    log_n: uint256,
    ood: DynArray[uint256, L.MAX_OOD],
    challenges: DynArray[uint256, L.MAX_CHALLENGES],
    alpha: uint256,
    z: uint256,
) -> bool:
    assert self._log_n(public_input) == log_n, "proof is for another trace length"
    w: uint256 = WIDTH
    frame: DynArray[uint256, L.MAX_FRAME] = []
    for i: uint256 in range(2 * w + 2, bound=L.MAX_FRAME):
        frame.append(ood[i])
    cons: DynArray[uint256, L.MAX_CONSTRAINTS] = []
    bounds: DynArray[L.Boundary, L.MAX_BOUNDARIES] = []
    cons, bounds = self._evaluate(public_input, frame, challenges)
    L.ood_check(log_n, w, 1, 1, ood, cons, bounds, alpha, z)
    return True


@internal
@view
def _evaluate(
    public_input: Bytes[L.MAX_PUBLIC],
    frame: DynArray[uint256, L.MAX_FRAME],
    challenges: DynArray[uint256, L.MAX_CHALLENGES],
) -> (DynArray[uint256, L.MAX_CONSTRAINTS], DynArray[L.Boundary, L.MAX_BOUNDARIES]):
    w: uint256 = WIDTH
    m: uint256 = w - 2
    assert len(frame) == 2 * w + 2 and len(challenges) == 2, "frame"
    n: uint256 = 1 << self._log_n(public_input)
    key: uint256 = frame[0]
    value: uint256 = frame[1]
    cons: DynArray[uint256, L.MAX_CONSTRAINTS] = []
    for i: uint256 in range(m, bound=L.MAX_WIDTH):
        r0: uint256 = frame[2 + i]
        r1: uint256 = frame[2 + (i + 1) % m]
        r2: uint256 = frame[2 + (i + 2) % m]
        cons.append(
            L.ext_sub(frame[w + 2 + i], L.ext_add(L.ext_add(L.ext_mul(r0, r1), r2), key))
        )
    gamma: uint256 = challenges[0]
    delta: uint256 = challenges[1]
    zc: uint256 = frame[2 * w]
    zn: uint256 = frame[2 * w + 1]
    term: uint256 = L.ext_sub(L.ext_sub(gamma, key), L.ext_mul(delta, value))
    cons.append(L.ext_sub(zn, L.ext_mul(zc, term)))

    bounds: DynArray[L.Boundary, L.MAX_BOUNDARIES] = []
    for i: uint256 in range(m, bound=L.MAX_WIDTH):
        bounds.append(
            L.Boundary(column=2 + i, row=0, aux=False, value=self._felt(public_input, 4 * i))
        )
    bounds.append(
        L.Boundary(column=2, row=n - 1, aux=False, value=self._felt(public_input, 4 * m))
    )
    bounds.append(L.Boundary(column=0, row=0, aux=True, value=1))
    # Π_j (γ - K_j - δ·V_j), eight keys and eight values per word
    keys_at: uint256 = 4 * m + 4
    vals_at: uint256 = keys_at + 4 * (n - 1)
    g0: uint256 = gamma & L.M64
    g1: uint256 = (gamma >> 64) & L.M64
    g2: uint256 = (gamma >> 128) & L.M64
    g3: uint256 = gamma >> 192
    d0: uint256 = delta & L.M64
    d1: uint256 = (delta >> 64) & L.M64
    d2: uint256 = (delta >> 128) & L.M64
    d3: uint256 = delta >> 192
    pp: uint256 = L.P * L.P
    prod: uint256 = 1
    kw: uint256 = 0
    vw: uint256 = 0
    for j: uint256 in range(n - 1, bound=1 << 21):
        lane: uint256 = j % 8
        if lane == 0:
            # the last words may end past the values: they only hold lanes not read
            kw = L.swap_lanes(self._word(public_input, keys_at + 4 * j))
            vw = L.swap_lanes(self._word(public_input, vals_at + 4 * j))
        s: uint256 = 224 - 32 * lane
        kj: uint256 = (kw >> s) & L.M32
        vj: uint256 = (vw >> s) & L.M32
        assert kj < L.P and vj < L.P, "public input not reduced modulo p"
        t: uint256 = L.pack(
            unsafe_sub(unsafe_add(unsafe_add(g0, L.P), pp), unsafe_add(kj, unsafe_mul(d0, vj))) % L.P,
            unsafe_sub(unsafe_add(g1, pp), unsafe_mul(d1, vj)) % L.P,
            unsafe_sub(unsafe_add(g2, pp), unsafe_mul(d2, vj)) % L.P,
            unsafe_sub(unsafe_add(g3, pp), unsafe_mul(d3, vj)) % L.P,
        )
        prod = L.ext_mul(prod, t)
    bounds.append(L.Boundary(column=0, row=n - 1, aux=True, value=prod))
    return cons, bounds


@internal
@pure
def _word(public_input: Bytes[L.MAX_PUBLIC], o: uint256) -> uint256:
    """32 bytes from o; bytes past the end read as zero."""
    length: uint256 = len(public_input)
    if o + 32 <= length:
        return convert(extract32(public_input, o), uint256)
    return convert(extract32(public_input, length - 32), uint256) << (8 * (o + 32 - length))
