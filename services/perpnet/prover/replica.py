"""The prover's view of L2: the state before any batch, rebuilt by replaying batches in order.

Each batch the sequencer cut is re-applied with the core (authenticated: the
sequencer checked signatures at admission) and re-cut; its public inputs must
come out byte for byte as the sequencer recorded them, or the replica has
diverged (a different exchange configuration) and proves nothing.

The batch to prove is applied once, not twice: `prove_next` hands this state
to the proof's preparation, whose replay (the witness) moves it past the batch
and checks that it reaches the recorded roots and statement.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpnet.core.batch import Batch, BatchBuilder, PublicInputs, decode_diff
from perpnet.core.encoding import decode_tx
from perpnet.core.errors import CoreError
from perpnet.core.state import ExchangeConfig, ExchangeState
from perpnet.stark.batch_proof import Prepared, prepare_batch


class ReplicaDivergedError(RuntimeError):
    """The replay of a batch does not give what the sequencer recorded."""


@dataclass(frozen=True, slots=True)
class RecordedBatch:
    """A batch as the sequencer publishes it (GetBatch with_txs)."""

    batch_id: int
    public_inputs: bytes
    txs: tuple[bytes, ...]
    state_diff: bytes = b""  # encode_diff: what prove_next needs besides


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

    def advance(self, recorded: RecordedBatch) -> Batch:
        """Replay the next batch."""
        self._check_next(recorded)
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
        return batch

    def prove_next(self, recorded: RecordedBatch) -> Prepared:
        """The next batch ready to prove, this state moved past it by the preparation.

        Raises StarkProverError (the replica back at genesis) if the record does not
        replay to its own roots and statement. Blocking: the caller's thread owns the
        replica until it returns.
        """
        self._check_next(recorded)
        state = self.builder.state
        inputs = PublicInputs.decode(recorded.public_inputs)
        old = (state.root(), state.globals_bytes())
        diff = decode_diff(recorded.state_diff, old[0], inputs.new_root, old[1], inputs.globals)
        txs = tuple(decode_tx(raw, self.config.domain) for raw in recorded.txs)
        batch = Batch(recorded.batch_id, txs, diff, inputs)
        try:
            prepared = prepare_batch(state, batch, in_place=True)
        except BaseException:
            self.reset()  # part way through the batch
            raise
        self.restore(recorded.batch_id, state)
        return prepared

    def _check_next(self, recorded: RecordedBatch) -> None:
        if recorded.batch_id != self.next_batch_id:
            raise ValueError(f"batch {recorded.batch_id} is not the next ({self.next_batch_id})")
