"""A stored batch back into what the verifier needs: public inputs and the state diff.

The batches table keeps the public inputs and `encode_diff(diff)` (touched
account leaves and order fills). The diff's roots and globals are not in that
encoding: the new ones are the public inputs', the old ones the previous
batch's (genesis for batch 0). `decode_diff` is the inverse of
perpnet.core.batch.encode_diff and belongs beside it in the core.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpnet.core.batch import PublicInputs
from perpnet.core.encoding import Reader
from perpnet.core.state import AccountDiff, ExchangeState, OrderDiff, StateDiff


def decode_diff(
    data: bytes, old_root: bytes, new_root: bytes, old_globals: bytes, new_globals: bytes
) -> StateDiff:
    r = Reader(data)
    accounts = tuple(
        AccountDiff(r.int("u32"), r.take(r.int("u16")), r.take(r.int("u16")))
        for _ in range(r.int("u32"))
    )
    orders = tuple(
        OrderDiff(r.int("u32"), r.raw("b32"), r.int("u128"), r.int("u128"))
        for _ in range(r.int("u32"))
    )
    r.done()
    return StateDiff(old_root, new_root, old_globals, new_globals, accounts, orders)


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
