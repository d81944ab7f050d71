#pragma version ~=0.4.3
"""
@title AIR evaluator for perpnet.stark.examples.FibonacciAir
@notice a' = b, b' = a + b from (1, 1); public input: trace length (u64 big-endian)
        and the value of b in the last row (u32 little-endian).
"""

import stark_lib as L

NAME: constant(Bytes[64]) = b"perpnet.example.fibonacci"


@internal
@pure
def _log_n(public_input: Bytes[L.MAX_PUBLIC]) -> uint256:
    assert len(public_input) == 12, "public input is 12 bytes"
    n: uint256 = convert(slice(public_input, 0, 8), uint256)
    for i: uint256 in range(3, 22):
        if n == 1 << i:
            return i
    raise "trace length must be a power of two in [8, 2^21]"


@external
@pure
def air_info() -> L.AirInfo:
    return L.AirInfo(name=NAME, width=2, aux_width=0, num_challenges=0, degree=1)


@internal
@pure
def _evaluate(
    public_input: Bytes[L.MAX_PUBLIC],
    frame: DynArray[uint256, L.MAX_FRAME],
    challenges: DynArray[uint256, L.MAX_CHALLENGES],
) -> (DynArray[uint256, L.MAX_CONSTRAINTS], DynArray[L.Boundary, L.MAX_BOUNDARIES]):
    assert len(frame) == 4, "frame"
    a: uint256 = frame[0]
    b: uint256 = frame[1]
    cons: DynArray[uint256, L.MAX_CONSTRAINTS] = [
        L.ext_sub(frame[2], b), L.ext_sub(frame[3], L.ext_add(a, b))
    ]
    n: uint256 = 1 << self._log_n(public_input)
    result: uint256 = L.swap_lanes(convert(slice(public_input, 8, 4), uint256))
    assert result < L.P, "result not reduced modulo p"
    bounds: DynArray[L.Boundary, L.MAX_BOUNDARIES] = [
        L.Boundary(column=0, row=0, aux=False, value=1),
        L.Boundary(column=1, row=0, aux=False, value=1),
        L.Boundary(column=1, row=n - 1, aux=False, value=result),
    ]
    return cons, bounds


@external
@pure
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
    cons: DynArray[uint256, L.MAX_CONSTRAINTS] = []
    bounds: DynArray[L.Boundary, L.MAX_BOUNDARIES] = []
    cons, bounds = self._evaluate(public_input, [ood[0], ood[1], ood[2], ood[3]], challenges)
    L.ood_check(log_n, 2, 0, 1, ood, cons, bounds, alpha, z)
    return True
