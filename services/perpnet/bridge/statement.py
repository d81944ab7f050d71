"""A stored batch back into what the verifier needs: public inputs and the state diff.

The batches table keeps the public inputs and `encode_diff(diff)` (touched
account leaves and order fills). The diff's roots and globals are not in that
encoding: the new ones are the public inputs', the old ones the previous
batch's (genesis for batch 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from perpnet.core.batch import PublicInputs, decode_diff
from perpnet.core.state import ExchangeState, StateDiff


def genesis_globals(state: ExchangeState | None = None) -> bytes:
    """The globals before batch 0 (those of a fresh exchange)."""
    return (state or ExchangeState()).globals_bytes()


@dataclass(frozen=True, slots=True)
class Statement:
    public_inputs: PublicInputs
    diff: StateDiff

    @classmethod
    def of(cls, public_inputs: bytes, state_diff: bytes, old_globals: bytes) -> Statement:
        pi = PublicInputs.decode(public_inputs)
        diff = decode_diff(state_diff, pi.old_root, pi.new_root, old_globals, pi.globals)
        return cls(pi, diff)
