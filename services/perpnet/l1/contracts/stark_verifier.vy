#pragma version ~=0.4.3
"""
@title perpnet STARK verifier: perpnet.stark.verify on chain
@notice Verifies the canonical proof bytes perpnet.stark produces (proof.py, version 2)
        for one AIR, whose out-of-domain constraint evaluation is a separate contract
        (IAirEvaluator), with the parameters fixed at deployment. It parses the proof,
        replays the keccak transcript byte for byte (statement header with the public
        input, commitments, challenges, out-of-domain values, FRI roots and final
        polynomial, proof of work, query indices), checks the composition identity at
        the out-of-domain point with the evaluator's constraints, the single-row trace
        and composition multiproofs at the queried LDE positions, computes the DEEP
        composition there, and hands it to stark_fri, which checks it against the
        committed FRI layer 0 and runs the query phase. Any failure reverts.
"""

import stark_lib as L

MAX_PROOF: constant(uint256) = L.MAX_PROOF
MAX_PUBLIC: constant(uint256) = L.MAX_PUBLIC
MAX_WIDTH: constant(uint256) = L.MAX_WIDTH
MAX_AUX: constant(uint256) = L.MAX_AUX
MAX_CHUNKS: constant(uint256) = L.MAX_CHUNKS
MAX_FRAME: constant(uint256) = L.MAX_FRAME
MAX_OOD: constant(uint256) = L.MAX_OOD
MAX_CHALLENGES: constant(uint256) = L.MAX_CHALLENGES
MAX_LAYERS: constant(uint256) = 24
MAX_FINAL: constant(uint256) = 256
MAX_LOG_TRACE: constant(uint256) = 21
# keccak("perpnet.stark.transcript.v1" || "perpnet.stark.v1"): Transcript(b"perpnet.stark.v1")
TRANSCRIPT_START: constant(bytes32) = keccak256("perpnet.stark.transcript.v1perpnet.stark.v1")
# 64-bit lanes: the low u32 of each (EVEN_LANES), 2^32 - p in each, bit 32 of each
EVEN_LANES: constant(uint256) = 26959946660873538060741835960174461801791452538186943042387869433855
LANE_OFFSET: constant(uint256) = 14322471660646675656306593745635149180578925623606730618157846757375
LANE_CARRY: constant(uint256) = 26959946667150639796128516724350533591920057417771119838357381709824
MAGIC_VERSION: constant(uint256) = 5786654192555936514  # 0x504E535441524B02: "PNSTARK", version 2


interface IAirEvaluator:
    def air_info() -> L.AirInfo: view
    # Reverts unless the statement's trace has 2^log_n rows and the AIR's constraints,
    # evaluated on the out-of-domain values `ood` (L.ood_check's layout), satisfy the
    # composition identity at z. Called with a raw call of the encoding's actual length
    # and no return buffer (a typed call would send, and its answer occupy, the maximum
    # sizes: about 0.2 MB of memory paid on every update; even a 32-byte answer lands
    # past the call's maximum-size buffer, ~0.3M gas). So the answer is not read: an
    # evaluator must revert on failure and have no fallback, and the constructor refuses
    # an address without code.
    def check(
        public_input: Bytes[MAX_PUBLIC],
        log_n: uint256,
        ood: DynArray[uint256, MAX_OOD],
        challenges: DynArray[uint256, MAX_CHALLENGES],
        alpha: uint256,
        z: uint256,
    ) -> bool: view


CHECK: constant(bytes4) = method_id("check(bytes,uint256,uint256[],uint256[],uint256,uint256)", output_type=bytes4)


struct Layout:
    log_n: uint256
    width: uint256
    aux_width: uint256
    num_challenges: uint256
    chunks: uint256
    log_lde: uint256
    rounds: uint256
    final_size: uint256


EVALUATOR: public(immutable(address))
FRI: public(immutable(address))
LOG_BLOWUP: public(immutable(uint256))
NUM_QUERIES: public(immutable(uint256))
LOG_FOLDING: public(immutable(uint256))
GRINDING_BITS: public(immutable(uint256))
LOG_FINAL: public(immutable(uint256))
HEAD: public(immutable(uint256))  # the proof's first 13 bytes: magic, version, parameters


@internal
@pure
def _log2(x: uint256) -> uint256:
    """log2 of a power of two in [1, 2^10], else max_value."""
    for i: uint256 in range(11):
        if x == 1 << i:
            return i
    return max_value(uint256)


@deploy
def __init__(
    evaluator: address,
    fri: address,
    blowup: uint256,
    num_queries: uint256,
    folding_factor: uint256,
    grinding_bits: uint256,
    final_poly_size: uint256,
):
    """The parameters are ProofParams' (perpnet.stark.params); proofs made with any
    other parameters are rejected."""
    assert evaluator.is_contract and fri.is_contract, "evaluator and FRI must be contracts"
    lb: uint256 = self._log2(blowup)
    lf: uint256 = self._log2(folding_factor)
    lp: uint256 = self._log2(final_poly_size)
    assert lb >= 1 and lb <= 6, "blowup"
    assert lf >= 1 and lf <= 3, "folding factor"
    assert final_poly_size <= MAX_FINAL, "final polynomial size"
    assert num_queries >= 1 and num_queries <= L.MAX_QUERIES, "number of queries"
    assert grinding_bits <= 32, "grinding bits"
    EVALUATOR = evaluator
    FRI = fri
    LOG_BLOWUP = lb
    NUM_QUERIES = num_queries
    LOG_FOLDING = lf
    GRINDING_BITS = grinding_bits
    LOG_FINAL = lp
    HEAD = (MAGIC_VERSION << 40) | (lb << 32) | (num_queries << 24) | (lf << 16) | (
        grinding_bits << 8
    ) | lp


@internal
@view
def _layout(info: L.AirInfo, log_n: uint256) -> Layout:
    """protocol.Layout.of and fri.num_folds / final_size."""
    assert log_n >= 3 and log_n <= MAX_LOG_TRACE, "trace length"
    assert info.width >= 1 and info.width <= MAX_WIDTH, "width"
    assert info.aux_width <= MAX_AUX, "aux width"
    assert info.degree >= 1, "degree"
    assert info.aux_width == 0 or info.num_challenges >= 1, "aux columns need challenges"
    assert info.num_challenges <= MAX_CHALLENGES, "challenges"
    ce: uint256 = 2
    for _: uint256 in range(8):
        if ce >= info.degree:
            break
        ce *= 2
    assert ce >= info.degree and ce <= 1 << LOG_BLOWUP, "degree needs a larger blowup"
    chunks: uint256 = max(1, info.degree - 1)
    assert chunks <= MAX_CHUNKS, "too many composition chunks"
    excess: uint256 = 0
    if log_n > LOG_FINAL:
        excess = log_n - LOG_FINAL
    rounds: uint256 = max(1, (excess + LOG_FOLDING - 1) // LOG_FOLDING)
    log_final: uint256 = 0
    if log_n > rounds * LOG_FOLDING:
        log_final = log_n - rounds * LOG_FOLDING
    assert rounds <= MAX_LAYERS, "too many FRI rounds"
    return Layout(
        log_n=log_n,
        width=info.width,
        aux_width=info.aux_width,
        num_challenges=info.num_challenges,
        chunks=chunks,
        log_lde=log_n + LOG_BLOWUP,
        rounds=rounds,
        final_size=1 << log_final,
    )


@internal
@view
def _word(base: uint256, length: uint256, o: uint256) -> uint256:
    """Bytes o..o+31 of the proof (calldata at `base`); bytes past its end read as zero."""
    if o + 32 <= length:
        return convert(slice(msg.data, base + o, 32), uint256)
    return convert(slice(msg.data, base + length - 32, 32), uint256) << (8 * (o + 32 - length))


@internal
@view
def _ext_at(base: uint256, length: uint256, o: uint256) -> uint256:
    return L.ext_from_lanes(L.swap_lanes(self._word(base, length, o)), 0)


@internal
@view
def _tensor(base: uint256, length: uint256, o: uint256, d0: uint256, d1: uint256, d2: uint256):
    """A tensor header at o: rank 2 with dims (d0, d1) if d2 == 0, else rank 3."""
    h: uint256 = self._word(base, length, o)
    if d2 == 0:
        assert o + 9 <= length, "truncated proof"
        assert h >> 248 == 2 and (h >> 216) & L.M32 == d0 and (h >> 184) & L.M32 == d1, "tensor shape"
    else:
        assert o + 13 <= length, "truncated proof"
        assert h >> 248 == 3 and (h >> 216) & L.M32 == d0, "tensor shape"
        assert (h >> 184) & L.M32 == d1 and (h >> 152) & L.M32 == d2, "tensor shape"


@internal
@pure
def _queries(state: bytes32, count: uint256, log_size: uint256) -> DynArray[uint256, L.MAX_QUERIES]:
    """sorted(set(Transcript.challenge_indices(count, 2^log_size)))."""
    raw: DynArray[uint256, L.MAX_QUERIES] = []
    counter: uint256 = 0
    for _: uint256 in range(L.MAX_QUERIES):
        if len(raw) >= count:
            break
        r: uint256 = L.bswap256(convert(L.squeeze(state, counter), uint256))
        counter += 1
        for i: uint256 in range(8):
            if len(raw) >= count:
                break
            raw.append(r >> (32 * i))
    return L.sorted_unique(raw, (1 << log_size) - 1)


@internal
@view
def _batch_inv(xs: DynArray[uint256, L.MAX_QUERIES]) -> DynArray[uint256, L.MAX_QUERIES]:
    """Montgomery's trick: every inverse for one extension inversion."""
    k: uint256 = len(xs)
    prefix: DynArray[uint256, L.MAX_QUERIES] = []
    acc: uint256 = 1
    for x: uint256 in xs:
        prefix.append(acc)
        acc = L.ext_mul(acc, x)
    inv: uint256 = L.ext_inv(acc)
    out: DynArray[uint256, L.MAX_QUERIES] = prefix
    for s: uint256 in range(k, bound=L.MAX_QUERIES):
        i: uint256 = k - 1 - s
        out[i] = L.ext_mul(prefix[i], inv)
        inv = L.ext_mul(inv, xs[i])
    return out


@external
@view
def verify_proof(public_input: Bytes[MAX_PUBLIC], proof: Bytes[MAX_PROOF]) -> bool:
    """True if `proof` shows that a trace satisfying the AIR with this public input
    exists (perpnet.stark.verify accepts it); reverts otherwise."""
    plen: uint256 = len(proof)
    assert plen >= 96, "truncated proof"
    w0: uint256 = convert(extract32(proof, 0), uint256)
    assert w0 >> 152 == HEAD, "magic, version or parameters differ"
    # the trace length is the header's; the evaluator's check holds it against the statement
    info: L.AirInfo = staticcall IAirEvaluator(EVALUATOR).air_info()
    lay: Layout = self._layout(info, (w0 >> 144) & 255)
    w: uint256 = lay.width
    a: uint256 = lay.aux_width
    k: uint256 = lay.chunks
    base: uint256 = convert(slice(msg.data, 36, 32), uint256) + 36

    # ---- header, commitments, out-of-domain values, FRI roots, final polynomial, nonce
    main_root: bytes32 = extract32(proof, 14)
    flags: uint256 = convert(extract32(proof, 46), uint256) >> 248
    assert flags == convert(a > 0, uint256), "auxiliary trace presence"
    pos: uint256 = 47
    aux_root: bytes32 = empty(bytes32)
    if a > 0:
        aux_root = extract32(proof, pos)
        pos += 32
    comp_root: bytes32 = extract32(proof, pos)
    pos += 32
    n_ood: uint256 = 2 * w + 2 * a + k
    self._tensor(base, plen, pos, n_ood, 4, 0)
    pos += 9
    ood_at: uint256 = pos
    pos += 16 * n_ood
    assert pos + 1 <= plen, "truncated proof"
    assert self._word(base, plen, pos) >> 248 == lay.rounds, "FRI layer count"
    pos += 1
    roots: DynArray[bytes32, MAX_LAYERS] = []  # layer 0 (the DEEP composition) first
    for i: uint256 in range(lay.rounds, bound=MAX_LAYERS):
        assert pos + 32 <= plen, "truncated proof"
        roots.append(convert(self._word(base, plen, pos), bytes32))
        pos += 32
    self._tensor(base, plen, pos, lay.final_size, 4, 0)
    pos += 9
    final_at: uint256 = pos
    pos += 16 * lay.final_size
    assert pos + 8 <= plen, "truncated proof"
    nonce: uint256 = self._word(base, plen, pos) >> 192
    pos += 8

    # ---- transcript (protocol.start_transcript, verifier.verify)
    state: bytes32 = keccak256(
        concat(
            TRANSCRIPT_START,
            b"\x00",
            slice(proof, 8, 5),
            convert(convert(len(info.name), uint32), bytes4),
            info.name,
            convert(convert(lay.log_n, uint8), bytes1),
            convert(convert(w, uint32), bytes4),
            convert(convert(a, uint32), bytes4),
            convert(convert(len(public_input), uint64), bytes8),
            public_input,
        )
    )
    state = keccak256(concat(state, b"\x00", main_root))
    challenges: DynArray[uint256, MAX_CHALLENGES] = []
    if a > 0:
        for i: uint256 in range(lay.num_challenges, bound=MAX_CHALLENGES):
            challenges.append(L.ext_challenge(state, i))
        state = keccak256(concat(state, b"\x00", aux_root))
    alpha: uint256 = L.ext_challenge(state, 0)
    state = keccak256(concat(state, b"\x00", comp_root))
    z: uint256 = 0
    for i: uint256 in range(8):
        z = L.ext_challenge(state, i)
        if z >> 64 != 0:
            break
    assert z >> 64 != 0, "no out-of-domain point"
    state = keccak256(concat(state, b"\x00", L.calldata_region(base + ood_at, 16 * n_ood)))
    gamma: uint256 = L.ext_challenge(state, 0)
    betas: DynArray[uint256, MAX_LAYERS] = []
    for root: bytes32 in roots:
        # each layer's root, then its folding challenge
        state = keccak256(concat(state, b"\x00", root))
        betas.append(L.ext_challenge(state, 0))
    state = keccak256(concat(state, b"\x00", L.calldata_region(base + final_at, 16 * lay.final_size)))
    if GRINDING_BITS == 0:
        assert nonce == 0, "proof-of-work nonce is invalid"
    else:
        pow_digest: uint256 = convert(
            keccak256(concat(state, b"\x02", convert(convert(nonce, uint64), bytes8))), uint256
        )
        assert pow_digest >> (256 - GRINDING_BITS) == 0, "proof-of-work nonce is invalid"
    state = keccak256(concat(state, b"\x00", convert(convert(nonce, uint64), bytes8)))
    queries: DynArray[uint256, L.MAX_QUERIES] = self._queries(state, NUM_QUERIES, lay.log_lde)
    kq: uint256 = len(queries)

    # ---- out-of-domain values; the composition identity at z
    ood: DynArray[uint256, MAX_OOD] = []
    for i: uint256 in range(n_ood, bound=MAX_OOD):
        ood.append(self._ext_at(base, plen, ood_at + 16 * i))
    final_poly: DynArray[uint256, MAX_FINAL] = []
    for i: uint256 in range(lay.final_size, bound=MAX_FINAL):
        final_poly.append(self._ext_at(base, plen, final_at + 16 * i))
    raw_call(
        EVALUATOR,
        abi_encode(public_input, lay.log_n, ood, challenges, alpha, z, method_id=CHECK),
        is_static_call=True,
    )

    # ---- trace and composition openings: one row per queried LDE position
    gp: DynArray[uint256, MAX_OOD] = []  # γ^j
    acc: uint256 = 1
    for j: uint256 in range(w + a + k, bound=MAX_OOD):
        gp.append(acc)
        acc = L.ext_mul(acc, gamma)
    # F(z) and G(z·g) (protocol.ood_combinations)
    g_z: uint256 = 0
    g_zg: uint256 = 0
    for j: uint256 in range(w + a, bound=MAX_FRAME):
        vz: uint256 = 0
        vzg: uint256 = 0
        if j < w:
            vz = ood[j]
            vzg = ood[w + j]
        else:
            vz = ood[w + j]
            vzg = ood[w + a + j]
        g_z = L.ext_add(g_z, L.ext_mul(gp[j], vz))
        g_zg = L.ext_add(g_zg, L.ext_mul(gp[j], vzg))
    f_z: uint256 = g_z
    for c: uint256 in range(k, bound=MAX_CHUNKS):
        f_z = L.ext_add(f_z, L.ext_mul(gp[w + a + c], ood[2 * w + 2 * a + c]))
    zg: uint256 = L.ext_mul_base(z, L.two_adic_root(lay.log_n))
    z_sum_neg: uint256 = L.ext_neg(L.ext_add(z, zg))
    zz: uint256 = L.ext_mul(z, zg)

    depth: uint256 = lay.log_lde
    # main trace (kq, w), aux trace (kq, 4a), composition (kq, 4k)
    at: uint256[3] = empty(uint256[3])
    for j: uint256 in range(3):
        cols: uint256 = w
        root: bytes32 = main_root
        if j == 1:
            if a == 0:
                continue
            cols = 4 * a
            root = aux_root
        elif j == 2:
            cols = 4 * k
            root = comp_root
        self._tensor(base, plen, pos, kq, cols, 0)
        pos += 9
        at[j] = pos
        leaf: uint256 = 4 * cols
        pos += kq * leaf
        assert pos + 4 <= plen, "truncated proof"
        count: uint256 = self._word(base, plen, pos) >> 224
        pos += 4
        assert pos + 32 * count <= plen, "truncated proof"
        hashes: DynArray[bytes32, L.MAX_QUERIES] = []
        for t: uint256 in range(kq, bound=L.MAX_QUERIES):
            hashes.append(keccak256(L.calldata_region(base + at[j] + t * leaf, leaf)))
        assert L.merkle_root(depth, queries, hashes, base + pos, count) == root, (
            "Merkle opening does not match the commitment"
        )
        pos += 32 * count
    main_at: uint256 = at[0]
    aux_at: uint256 = at[1]
    comp_at: uint256 = at[2]

    # ---- DEEP composition at every queried point
    root_n: uint256 = L.two_adic_root(depth)
    nums: DynArray[uint256, L.MAX_QUERIES] = []
    dens: DynArray[uint256, L.MAX_QUERIES] = []
    # G(x) over the main columns for every opened row, eight columns at a time with
    # their weights in locals: limbs 0, 1 of γ^j in the 128-bit lanes of lo, limbs 2, 3
    # in those of hi; products are < 2^62, so the lanes never overflow
    acc_lo: uint256[L.MAX_QUERIES] = empty(uint256[L.MAX_QUERIES])
    acc_hi: uint256[L.MAX_QUERIES] = empty(uint256[L.MAX_QUERIES])
    for cw: uint256 in range(MAX_WIDTH // 8):
        c: uint256 = 8 * cw
        if c >= w:
            break
        glo: uint256[8] = empty(uint256[8])
        ghi: uint256[8] = empty(uint256[8])
        for l: uint256 in range(8):
            if c + l < w:
                gj: uint256 = gp[c + l]
                glo[l] = (gj & L.M64) | (((gj >> 64) & L.M64) << 128)
                ghi[l] = ((gj >> 128) & L.M64) | ((gj >> 192) << 128)
        g0: uint256 = glo[0]
        g1: uint256 = glo[1]
        g2: uint256 = glo[2]
        g3: uint256 = glo[3]
        g4: uint256 = glo[4]
        g5: uint256 = glo[5]
        g6: uint256 = glo[6]
        g7: uint256 = glo[7]
        h0: uint256 = ghi[0]
        h1: uint256 = ghi[1]
        h2: uint256 = ghi[2]
        h3: uint256 = ghi[3]
        h4: uint256 = ghi[4]
        h5: uint256 = ghi[5]
        h6: uint256 = ghi[6]
        h7: uint256 = ghi[7]
        tail: uint256 = max_value(uint256)
        if c + 8 > w:
            # lanes past the row belong to the next one: their weights are zero, but
            # they must not fail the range check
            tail = ~((1 << (32 * (c + 8 - w))) - 1)
        cell_at: uint256 = main_at + 4 * c
        for row: uint256 in range(kq, bound=L.MAX_QUERIES):
            word: uint256 = L.swap_lanes(convert(extract32(proof, cell_at), uint256)) & tail
            cell_at = unsafe_add(cell_at, 4 * w)
            # every u32 lane < p: add 2^32 - p in 64-bit lanes, no carry may reach bit 32
            assert (
                (unsafe_add(word & EVEN_LANES, LANE_OFFSET) | unsafe_add((word >> 32) & EVEN_LANES, LANE_OFFSET))
                & LANE_CARRY
            ) == 0, "element not reduced modulo p"
            v0: uint256 = word >> 224
            v1: uint256 = (word >> 192) & L.M32
            v2: uint256 = (word >> 160) & L.M32
            v3: uint256 = (word >> 128) & L.M32
            v4: uint256 = (word >> 96) & L.M32
            v5: uint256 = (word >> 64) & L.M32
            v6: uint256 = (word >> 32) & L.M32
            v7: uint256 = word & L.M32
            acc_lo[row] = unsafe_add(
                acc_lo[row],
                unsafe_add(
                    unsafe_add(
                        unsafe_add(unsafe_mul(g0, v0), unsafe_mul(g1, v1)),
                        unsafe_add(unsafe_mul(g2, v2), unsafe_mul(g3, v3)),
                    ),
                    unsafe_add(
                        unsafe_add(unsafe_mul(g4, v4), unsafe_mul(g5, v5)),
                        unsafe_add(unsafe_mul(g6, v6), unsafe_mul(g7, v7)),
                    ),
                ),
            )
            acc_hi[row] = unsafe_add(
                acc_hi[row],
                unsafe_add(
                    unsafe_add(
                        unsafe_add(unsafe_mul(h0, v0), unsafe_mul(h1, v1)),
                        unsafe_add(unsafe_mul(h2, v2), unsafe_mul(h3, v3)),
                    ),
                    unsafe_add(
                        unsafe_add(unsafe_mul(h4, v4), unsafe_mul(h5, v5)),
                        unsafe_add(unsafe_mul(h6, v6), unsafe_mul(h7, v7)),
                    ),
                ),
            )
    for row: uint256 in range(kq, bound=L.MAX_QUERIES):
        x: uint256 = unsafe_mul(L.GENERATOR, L.modexp(root_n, queries[row])) % L.P
        lo: uint256 = acc_lo[row]
        hi: uint256 = acc_hi[row]
        g_x: uint256 = L.pack(
            (lo & L.M128) % L.P, (lo >> 128) % L.P, (hi & L.M128) % L.P, (hi >> 128) % L.P
        )
        for i: uint256 in range(a, bound=MAX_AUX):
            v: uint256 = self._ext_at(base, plen, aux_at + 16 * (a * row + i))
            g_x = L.ext_add(g_x, L.ext_mul(gp[w + i], v))
        f_x: uint256 = g_x
        for c: uint256 in range(k, bound=MAX_CHUNKS):
            v: uint256 = self._ext_at(base, plen, comp_at + 16 * (k * row + c))
            f_x = L.ext_add(f_x, L.ext_mul(gp[w + a + c], v))
        d1: uint256 = L.ext_sub(x, z)
        d2: uint256 = L.ext_sub(x, zg)
        nums.append(
            L.ext_add(L.ext_mul(L.ext_sub(f_x, f_z), d2), L.ext_mul(L.ext_sub(g_x, g_zg), d1))
        )
        # (x - z)(x - zg) = x^2 + x·(-(z + zg)) + z·zg: lanes stay below 2^63
        dens.append(
            L.reduce_lanes(unsafe_add(unsafe_add(unsafe_mul(z_sum_neg, x), zz), unsafe_mul(x, x) % L.P))
        )
    invs: DynArray[uint256, L.MAX_QUERIES] = self._batch_inv(dens)
    deep: DynArray[uint256, L.MAX_QUERIES] = []
    for i: uint256 in range(kq, bound=L.MAX_QUERIES):
        deep.append(L.ext_mul(nums[i], invs[i]))

    # ---- FRI: it reverts unless it accepts. A raw call sends the encoded arguments'
    # actual length and needs no return buffer (a typed call sends its buffer's maximum,
    # a return buffer would sit past it, and memory is paid up to the highest byte touched)
    raw_call(
        FRI,
        abi_encode(
            proof,
            pos,
            depth,
            LOG_FOLDING,
            roots,
            betas,
            final_poly,
            queries,
            deep,
            method_id=method_id(
                "verify_fri(bytes,uint256,uint256,uint256,bytes32[],uint256[],uint256[],uint256[],uint256[])"
            ),
        ),
        is_static_call=True,
    )
    return True
