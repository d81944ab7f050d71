"""perpnet.stark: a transparent STARK proof system in pure Python and NumPy.

BabyBear field with a degree-4 extension for challenges, coset LDE by NTT, keccak256
Merkle commitments and Fiat–Shamir, DEEP-ALI composition and FRI. Write an `Air`,
build its trace, then `prove(air, trace)` -> bytes and `verify(air, proof)`.
See docs/stark.md.
"""

from __future__ import annotations

from perpnet.stark.air import FE, Air, Boundary, Frame
from perpnet.stark.errors import (
    ParameterError,
    ProofFormatError,
    StarkError,
    StarkProverError,
    StarkVerificationError,
)
from perpnet.stark.params import DEFAULT_PARAMS, ProofParams, security_bits
from perpnet.stark.proof import Proof
from perpnet.stark.prover import prove
from perpnet.stark.verifier import verify

__all__ = [
    "DEFAULT_PARAMS",
    "FE",
    "Air",
    "Boundary",
    "Frame",
    "ParameterError",
    "Proof",
    "ProofFormatError",
    "ProofParams",
    "StarkError",
    "StarkProverError",
    "StarkVerificationError",
    "prove",
    "security_bits",
    "verify",
]
