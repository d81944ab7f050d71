"""Exceptions of the proof system, separate from the exchange core's error codes."""

from __future__ import annotations


class StarkError(Exception):
    """Base class: anything the proof system refuses."""


class ProofFormatError(StarkError):
    """The proof bytes are not a well-formed encoding (length, version, field range)."""


class StarkVerificationError(StarkError):
    """A well-formed proof that does not prove the statement."""


class StarkProverError(StarkError):
    """The prover was asked to prove something false (the trace breaks a constraint)."""


class ParameterError(StarkError, ValueError):
    """Proof parameters or an AIR definition outside what the system supports."""
