#pragma version ~=0.4.3
"""
@title perpnet STARK verifier, FRI query phase (fri.verify in perpnet.stark)
@notice Stateless and AIR-independent: stark_verifier calls it with the proof's FRI
        openings (the tail of the proof bytes, from the FRI opening count), the layer
        roots (layer 0, the DEEP composition, first), the folding challenges, the final
        polynomial, the sorted distinct queries (LDE positions) and the DEEP values the
        verifier computed there. It checks each layer's multiproof, that the opened
        layer-0 values equal those DEEP values and every later opened value equals the
        fold of the previous layer, that the final polynomial matches the last fold,
        and that the openings use every byte of the tail. Reverts otherwise.
"""

import stark_lib as L

MAX_FRI: constant(uint256) = L.MAX_PROOF
MAX_LAYERS: constant(uint256) = 24
MAX_FINAL: constant(uint256) = 256
PPPP2: constant(uint256) = 2 * L.PPPP


@internal
@view
def _word(base: uint256, length: uint256, o: uint256) -> uint256:
    """Bytes o..o+31 of the calldata byte string at `base` (o < length); bytes past its
    end read as zero (the ABI pads a byte string to a whole number of words)."""
    if o + 32 <= length:
        return convert(slice(msg.data, base + o, 32), uint256)
    if length >= 32:
        return convert(slice(msg.data, base + length - 32, 32), uint256) << (8 * (o + 32 - length))
    return convert(slice(msg.data, base, 32), uint256) << (8 * o)


@internal
@view
def _ext_at(base: uint256, length: uint256, o: uint256) -> uint256:
    """The extension element stored as four little-endian u32 at offset o."""
    return L.ext_from_lanes(L.swap_lanes(self._word(base, length, o)), 0)


@internal
@pure
def _fold(f: uint256[8], r: uint256, xinv: uint256, beta: uint256, w: uint256[8], rinv: uint256) -> uint256:
    """fri.fold for one coset: f[m] = value at x·ζ^m; returns Σ_k (β/x)^k · f_k, where
    f_k = Σ_m ζ^(-mk)/r · f[m]. w[j] = ζ^(-j)."""
    y: uint256 = L.ext_mul_base(beta, xinv)
    if r == 4:
        # radix-2 butterflies (ζ^-2 = -1): 4·f_0 = a + c, 4·f_2 = a - c, 4·f_1 = b + d,
        # 4·f_3 = b - d; lanes stay below 2^34 until they are reduced for a product
        a: uint256 = unsafe_add(f[0], f[2])
        c: uint256 = unsafe_add(f[1], f[3])
        b: uint256 = unsafe_sub(unsafe_add(f[0], L.PPPP), f[2])
        d: uint256 = L.reduce_lanes(unsafe_mul(unsafe_sub(unsafe_add(f[1], L.PPPP), f[3]), w[1]))
        acc: uint256 = L.reduce_lanes(unsafe_sub(unsafe_add(b, L.PPPP), d))
        acc = L.reduce_lanes(
            unsafe_add(L.ext_mul(acc, y), unsafe_sub(unsafe_add(a, PPPP2), c))
        )
        acc = L.reduce_lanes(unsafe_add(L.ext_mul(acc, y), unsafe_add(b, d)))
        acc = L.reduce_lanes(unsafe_add(L.ext_mul(acc, y), unsafe_add(a, c)))
        return L.ext_mul_base(acc, rinv)
    parts: uint256[8] = empty(uint256[8])
    for k: uint256 in range(8):
        if k >= r:
            break
        total: uint256 = 0
        acc: uint256 = 0
        for m: uint256 in range(8):
            if m >= r:
                break
            # lanes of f[m]·c are < 2^62: four of them fit a 64-bit lane
            acc = unsafe_add(acc, unsafe_mul(f[m], unsafe_mul(w[(m * k) % r], rinv) % L.P))
            if m % 4 == 3:
                total = L.ext_add(total, L.reduce_lanes(acc))
                acc = 0
        if r < 4:
            total = L.ext_add(total, L.reduce_lanes(acc))
        parts[k] = total
    out: uint256 = parts[r - 1]
    for s: uint256 in range(7):
        if s + 2 > r:
            break
        out = L.ext_add(L.ext_mul(out, y), parts[r - 2 - s])
    return out


@internal
@pure
def _pow_base(x: uint256, log_e: uint256) -> uint256:
    """x^(2^log_e) mod p."""
    out: uint256 = x
    for _: uint256 in range(log_e, bound=8):
        out = unsafe_mul(out, out) % L.P
    return out


@external
@view
def verify_fri(
    data: Bytes[MAX_FRI],
    start: uint256,
    log_lde: uint256,
    log_r: uint256,
    roots: DynArray[bytes32, MAX_LAYERS],
    betas: DynArray[uint256, MAX_LAYERS],
    final_poly: DynArray[uint256, MAX_FINAL],
    queries: DynArray[uint256, L.MAX_QUERIES],
    values: DynArray[uint256, L.MAX_QUERIES],
) -> bool:
    """Reverts unless the FRI query phase accepts. `data` is the whole proof, its FRI
    openings from byte `start` to the end; `values[t]` is the DEEP composition at
    x_t = 31·ω^q_t (q_t = queries[t], ω of order 2^log_lde), as the verifier computed
    it from the trace rows."""
    r: uint256 = 1 << log_r
    kq: uint256 = len(queries)
    n_layers: uint256 = len(roots)
    assert log_r >= 1 and log_r <= 3, "folding factor"
    assert n_layers >= 1 and len(betas) == n_layers, "one folding challenge per layer"
    assert kq > 0 and len(values) == kq, "one value per query"
    assert log_lde >= log_r * n_layers, "too many FRI layers"
    base: uint256 = convert(slice(msg.data, 4, 32), uint256) + 36
    dlen: uint256 = len(data)

    zeta: uint256 = L.two_adic_root(log_r)
    zinv: uint256 = L.inv(zeta)
    zp: uint256[8] = empty(uint256[8])  # ζ^j
    zn: uint256[8] = empty(uint256[8])  # ζ^(-j)
    zp[0] = 1
    zn[0] = 1
    for j: uint256 in range(1, 8):
        zp[j] = unsafe_mul(zp[j - 1], zeta) % L.P
        zn[j] = unsafe_mul(zn[j - 1], zinv) % L.P
    rinv: uint256 = L.inv(r)

    # Layer 0: query q is the point x = 31·ω^q.
    root_n: uint256 = L.two_adic_root(log_lde)
    root_inv: uint256 = L.inv(root_n)
    shift_inv: uint256 = L.inv(L.GENERATOR)
    positions: DynArray[uint256, L.MAX_QUERIES] = queries
    vals: DynArray[uint256, L.MAX_QUERIES] = values
    xs: DynArray[uint256, L.MAX_QUERIES] = []
    xis: DynArray[uint256, L.MAX_QUERIES] = []
    f: uint256[8] = empty(uint256[8])
    for q: uint256 in queries:
        xs.append(unsafe_mul(L.GENERATOR, L.modexp(root_n, q)) % L.P)
        xis.append(unsafe_mul(shift_inv, L.modexp(root_inv, q)) % L.P)

    # Layers 0..L-1, each committed: check the opened values, fold each opened leaf.
    assert start < dlen, "truncated FRI openings"
    assert self._word(base, dlen, start) >> 248 == n_layers, "FRI opening count"
    pos: uint256 = start + 1
    log_m: uint256 = log_lde
    leaf_size: uint256 = 16 * r
    for layer: uint256 in range(n_layers, bound=MAX_LAYERS):
        log_half: uint256 = log_m - log_r
        mask: uint256 = (1 << log_half) - 1
        leaves: DynArray[uint256, L.MAX_QUERIES] = L.sorted_unique(positions, mask)
        nl: uint256 = len(leaves)
        assert pos + 13 <= dlen, "truncated FRI opening"
        head: uint256 = self._word(base, dlen, pos)
        assert head >> 248 == 3, "FRI opening: tensor rank"
        assert (head >> 216) & L.M32 == nl, "FRI opening: leaf count"
        assert (head >> 184) & L.M32 == r, "FRI opening: group"
        assert (head >> 152) & L.M32 == 4, "FRI opening: extension degree"
        pos += 13
        vat: uint256 = pos
        pos += nl * leaf_size
        assert pos + 4 <= dlen, "truncated FRI opening"
        num_nodes: uint256 = self._word(base, dlen, pos) >> 224
        pos += 4
        assert pos + 32 * num_nodes <= dlen, "truncated FRI opening nodes"
        hashes: DynArray[bytes32, L.MAX_QUERIES] = []
        for i: uint256 in range(nl, bound=L.MAX_QUERIES):
            hashes.append(keccak256(L.calldata_region(base + vat + i * leaf_size, leaf_size)))
        got: bytes32 = L.merkle_root(log_half, leaves, hashes, base + pos, num_nodes)
        assert got == roots[layer], "FRI layer opening does not match its root"
        pos += 32 * num_nodes

        new_vals: DynArray[uint256, L.MAX_QUERIES] = []
        new_xs: DynArray[uint256, L.MAX_QUERIES] = []
        new_xis: DynArray[uint256, L.MAX_QUERIES] = []
        for i: uint256 in range(nl, bound=L.MAX_QUERIES):
            new_vals.append(0)
            new_xs.append(0)
            new_xis.append(0)
        for t: uint256 in range(len(positions), bound=L.MAX_QUERIES):
            p: uint256 = positions[t]
            row: uint256 = L.index_of(leaves, p & mask)
            slot: uint256 = p >> log_half
            lat: uint256 = vat + row * leaf_size
            claimed: uint256 = self._ext_at(base, dlen, lat + 16 * slot)
            if layer == 0:
                assert claimed == vals[t], "FRI layer 0 does not match the DEEP composition"
            else:
                assert claimed == vals[t], "FRI folding is inconsistent"
            if new_xs[row] == 0:
                # the coset base x·ζ^(-slot) and its inverse; fold the opened leaf
                bx: uint256 = unsafe_mul(xs[t], zn[slot]) % L.P
                bxi: uint256 = unsafe_mul(xis[t], zp[slot]) % L.P
                for m: uint256 in range(8):
                    if m >= r:
                        break
                    f[m] = self._ext_at(base, dlen, lat + 16 * m)
                new_vals[row] = self._fold(f, r, bxi, betas[layer], zn, rinv)
                new_xs[row] = self._pow_base(bx, log_r)
                new_xis[row] = self._pow_base(bxi, log_r)
        positions = leaves
        vals = new_vals
        xs = new_xs
        xis = new_xis
        log_m = log_half
    assert pos == dlen, "trailing bytes after the FRI openings"

    # The final polynomial (coefficients lowest first) at every remaining point.
    nf: uint256 = len(final_poly)
    assert nf > 0, "empty final polynomial"
    for t: uint256 in range(len(positions), bound=L.MAX_QUERIES):
        x: uint256 = xs[t]
        acc: uint256 = 0
        for s: uint256 in range(nf, bound=MAX_FINAL):
            # lanes of acc·x + c stay below 2^63
            acc = L.reduce_lanes(unsafe_add(unsafe_mul(acc, x), final_poly[nf - 1 - s]))
        assert acc == vals[t], "FRI: the final polynomial does not match the last fold"
    return True
