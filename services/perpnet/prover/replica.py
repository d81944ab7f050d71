"""The prover's view of L2: the state before any batch, rebuilt by replaying batches in order.

Each batch the sequencer cut is re-applied with the core (authenticated: the
sequencer checked signatures at admission) and re-cut; its public inputs must
come out byte for byte as the sequencer recorded them, or the replica has
diverged (a different exchange configuration) and proves nothing.

The batch to prove is applied once, not twice: `prove_next` hands this state
to the proof's preparation, whose replay (the witness) applies each transaction
through the replica's BatchBuilder, which then cuts the batch and compares its
public inputs as `advance` does.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpnet.core.batch import Batch, BatchBuilder, PublicInputs, decode_diff
from perpnet.core.encoding import decode_tx
from perpnet.core.errors import CoreError
from perpnet.core.events import Event
from perpnet.core.state import ExchangeConfig, ExchangeState
from perpnet.core.txs import Tx
from perpnet.stark.batch_proof import Prepared, prepare_batch


class ReplicaDivergedError(RuntimeError):
    """The replay of a batch does not give what the sequencer recorded."""


@dataclass(frozen=True, slots=True)
class RecordedBatch:
    """A batch as the sequencer publishes it (GetBatch with_txs)."""

    batch_id: int
    public_inputs: bytes
    txs: tuple[bytes, ...]
    state_diff: bytes = b""  # encode_diff: prove_next needs it, advance does not


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
                raise self._diverged(recorded, f"tx {i} refused: {result}")
        return self._cut(recorded)

    def prove_next(self, recorded: RecordedBatch) -> Prepared:
        """The next batch ready to prove, the replica moved past it by the preparation.

        Raises StarkProverError or ReplicaDivergedError (the replica back at genesis) if
        the record does not replay to its own roots, statement and public inputs.
        Blocking: the caller's thread owns the replica until it returns.
        """
        self._check_next(recorded)
        state = self.builder.state
        try:
            inputs = PublicInputs.decode(recorded.public_inputs)
            old = (state.root(), state.globals_bytes())
            diff = decode_diff(recorded.state_diff, old[0], inputs.new_root, old[1], inputs.globals)
            txs = tuple(decode_tx(raw, self.config.domain) for raw in recorded.txs)
        except CoreError as exc:
            raise ReplicaDivergedError(f"batch {recorded.batch_id}: {exc}") from None
        batch = Batch(recorded.batch_id, txs, diff, inputs)
        try:  # the witness applies each transaction through the builder, which cuts after
            prepared = prepare_batch(state, batch, in_place=True, apply=self._add)
        except CoreError as exc:
            raise self._diverged(recorded, str(exc)) from None
        except BaseException:
            self.reset()  # part way through the batch
            raise
        self._cut(recorded)
        return prepared

    def _add(self, tx: Tx) -> tuple[Event, ...]:
        result = self.builder.add(tx, authenticated=True)
        if isinstance(result, CoreError):
            raise result
        return result

    def _cut(self, recorded: RecordedBatch) -> Batch:
        """Cut the replayed batch: its public inputs must be the recorded ones, byte for byte
        (the proof binds withdrawals' amounts, not their recipients)."""
        batch = self.builder.cut()
        if batch.public_inputs.encode() != recorded.public_inputs:
            raise self._diverged(recorded, "public inputs differ on replay")
        return batch

    def _diverged(self, recorded: RecordedBatch, why: str) -> ReplicaDivergedError:
        self.reset()
        return ReplicaDivergedError(f"batch {recorded.batch_id}: {why}")

    def _check_next(self, recorded: RecordedBatch) -> None:
        if recorded.batch_id != self.next_batch_id:
            raise ValueError(f"batch {recorded.batch_id} is not the next ({self.next_batch_id})")
