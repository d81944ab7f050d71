"""Proof parameters and the conjectured security they give.

Defaults: blowup 4, 42 queries, FRI folding by 4, 14 bits of grinding. Under the
ethSTARK conjecture each query gives log2(blowup) bits and grinding adds its bits:
2·42 + 14 = 98. The challenge field (123 bits) caps that, less log2 of the LDE
domain size for the DEEP/ALI union bounds; for traces up to 2^21 rows that cap is
>= 100, so the defaults give 98 bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from perpnet.stark.errors import ParameterError
from perpnet.stark.field import EXT_BITS, TWO_ADICITY


@dataclass(frozen=True, slots=True)
class ProofParams:
    """What the prover and verifier agree on; part of the proven statement."""

    blowup: int = 4
    num_queries: int = 42
    folding_factor: int = 4
    grinding_bits: int = 14
    final_poly_size: int = 16
    """FRI stops folding once the polynomial has at most this many coefficients."""

    def __post_init__(self) -> None:
        def pow2(x: int, lo: int, hi: int, name: str) -> None:
            if not (lo <= x <= hi and x & (x - 1) == 0):
                raise ParameterError(f"{name} must be a power of two in [{lo}, {hi}], got {x}")

        pow2(self.blowup, 2, 64, "blowup")
        pow2(self.folding_factor, 2, 8, "folding_factor")
        pow2(self.final_poly_size, 1, 1024, "final_poly_size")
        if not 1 <= self.num_queries <= 255:
            raise ParameterError("num_queries must be in [1, 255]")
        if not 0 <= self.grinding_bits <= 32:
            raise ParameterError("grinding_bits must be in [0, 32]")

    @property
    def log_blowup(self) -> int:
        return self.blowup.bit_length() - 1

    @property
    def log_folding(self) -> int:
        return self.folding_factor.bit_length() - 1

    def encode(self) -> bytes:
        """Five bytes, absorbed first by the transcript and carried in the proof."""
        return bytes(
            [
                self.log_blowup,
                self.num_queries,
                self.log_folding,
                self.grinding_bits,
                self.final_poly_size.bit_length() - 1,
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> ProofParams:
        if len(raw) != 5:
            raise ParameterError("encoded parameters are 5 bytes")
        lb, q, lf, g, lp = raw
        if lb > 6 or lf > 3 or lp > 10:
            raise ParameterError("encoded parameters out of range")
        return cls(1 << lb, q, 1 << lf, g, 1 << lp)


DEFAULT_PARAMS = ProofParams()
MAX_LOG_TRACE = TWO_ADICITY - 6
"""Largest supported trace: 2^21 rows, so that any blowup's LDE fits the 2-adic subgroup."""


def security_bits(params: ProofParams, trace_length: int = 1 << MAX_LOG_TRACE) -> int:
    """Conjectured bits of security (ethSTARK): queries·log2(blowup) + grinding, capped
    by the challenge field: EXT_BITS - log2(LDE domain size).

    The default trace length is the largest supported, which gives the cap that holds
    for every proof with these parameters.
    """
    log_lde = math.ceil(math.log2(max(trace_length, 2))) + params.log_blowup
    query_bits = params.num_queries * params.log_blowup + params.grinding_bits
    return max(0, min(query_bits, EXT_BITS - log_lde))
