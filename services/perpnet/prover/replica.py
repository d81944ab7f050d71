"""The prover's view of L2: the state before any batch, rebuilt by replaying batches in order.

Each batch the sequencer cut is re-applied with the core (authenticated: the
sequencer checked signatures at admission) and re-cut; its public inputs must
come out byte for byte as the sequencer recorded them, or the replica has
diverged (a different exchange configuration) and proves nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from perpnet.core.batch import Batch, BatchBuilder
from perpnet.core.encoding import decode_tx
from perpnet.core.errors import CoreError
from perpnet.core.state import ExchangeConfig, ExchangeState


class ReplicaDivergedError(RuntimeError):
    """The replay of a batch does not give what the sequencer recorded."""


@dataclass(frozen=True, slots=True)
class RecordedBatch:
    """A batch as the sequencer publishes it (GetBatch with_txs)."""

    batch_id: int
    public_inputs: bytes
    txs: tuple[bytes, ...]


class BatchReplica:
    """An ExchangeState that moves one recorded batch at a time."""

    def __init__(self, config: ExchangeConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Back to genesis (to serve a batch older than where the replica stands)."""
        self.builder = BatchBuilder(ExchangeState(self.config))

    def restore(self, batch_id: int, state: ExchangeState) -> None:
        """Stand after `batch_id`, in `state` (a checkpoint's, checked by the caller)."""
        self.builder = BatchBuilder(state, batch_id + 1)

    @property
    def next_batch_id(self) -> int:
        return self.builder.next_batch_id

    def advance(self, recorded: RecordedBatch, *, keep_pre_state: bool = False) -> PreparedBatch:
        """Replay the next batch; `keep_pre_state` also returns a copy of the state before it."""
        if recorded.batch_id != self.next_batch_id:
            raise ValueError(f"batch {recorded.batch_id} is not the next ({self.next_batch_id})")
        state = self.builder.state
        pre = copy.deepcopy(state) if keep_pre_state else None
        domain = self.config.domain
        for i, raw in enumerate(recorded.txs):
            result = self.builder.add(decode_tx(raw, domain), authenticated=True)
            if isinstance(result, CoreError):
                self.reset()
                raise ReplicaDivergedError(f"batch {recorded.batch_id} tx {i} refused: {result}")
        batch = self.builder.cut()
        if batch.public_inputs.encode() != recorded.public_inputs:
            self.reset()
            raise ReplicaDivergedError(f"batch {recorded.batch_id}: public inputs differ on replay")
        return PreparedBatch(pre, batch)


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    pre_state: ExchangeState | None
    batch: Batch
