"""The sequencer's database work: the durable log, batch records, and the replay that recovers.

Every function here takes a Session and runs on the database thread
(`Database.run`), inside one transaction.

Each log entry records the batch it belongs to when it is written (the batch
that is open at that moment), and a batch row is written when the batch is
cut, in the same transaction as the entries that fill it if the cut happened
during a group. So the log alone says where every batch boundary was: the
replay re-cuts at the recorded boundaries and must reproduce every recorded
root and public input exactly, or the sequencer refuses to start.

Checkpoints (state_checkpoints) shorten that: the replay starts from the
newest checkpoint that checks out (its root is its batch's recorded root and
its snapshot restores to that root) and covers only the log after it. A
checkpoint that does not check out, or from which the log does not replay, is
skipped for the next older one, and in the end for genesis: a checkpoint can
make recovery faster, never different.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.orm import Session

from perpnet.core import snapshot
from perpnet.core.batch import Batch, BatchBuilder, encode_diff
from perpnet.core.encoding import decode_tx
from perpnet.core.errors import CoreError
from perpnet.core.state import ExchangeConfig, ExchangeState
from perpnet.runtime.clock import now_ms
from perpnet.runtime.grpc_server import StartupError
from perpnet.runtime.models import BatchRecord, BatchStatus, StateCheckpoint, TxLogEntry

REPLAY_PAGE = 5_000


class RecoveryError(StartupError):
    """The log does not replay to what was recorded: the sequencer must not serve from it."""


@dataclass(frozen=True, slots=True)
class LogRow:
    seq: int
    tx: bytes
    tx_hash: bytes
    batch_id: int
    received_ms: int


def lookup(session: Session, hashes: Sequence[bytes]) -> dict[bytes, tuple[int, int]]:
    """The (seq, batch_id) of each of `hashes` that is already in the log."""
    if not hashes:
        return {}
    query = select(TxLogEntry.tx_hash, TxLogEntry.seq, TxLogEntry.batch_id).where(
        TxLogEntry.tx_hash.in_(hashes)
    )
    return {h: (seq, batch_id or 0) for h, seq, batch_id in session.execute(query)}


def write(session: Session, rows: Sequence[dict[str, Any]], batches: Iterable[BatchRecord]) -> None:
    """Log entries (TxLogEntry columns as dicts) and cut batches, in the caller's transaction.
    The entries go through Core (one statement built once): the ORM's bulk path cost more
    CPU than the commit itself at one transaction per group."""
    if rows:
        session.connection().execute(_INSERT_ENTRIES, list(rows))
    session.add_all(batches)


_INSERT_ENTRIES = insert(cast(Table, TxLogEntry.__table__))


def batch_record(batch: Batch, first_seq: int, last_seq: int) -> BatchRecord:
    """The row of a batch just cut, covering log entries first_seq..last_seq (SEQUENCED)."""
    inputs = batch.public_inputs
    record = BatchRecord(
        id=batch.batch_id,
        old_root=inputs.old_root,
        new_root=inputs.new_root,
        first_seq=first_seq,
        last_seq=last_seq,
        public_inputs=inputs.encode(),
        state_diff=encode_diff(batch.diff),
    )
    record.advance(BatchStatus.SEQUENCED, now_ms())
    return record


def read_txs(session: Session, from_seq: int, limit: int) -> list[LogRow]:
    query = (
        select(
            TxLogEntry.seq,
            TxLogEntry.tx,
            TxLogEntry.tx_hash,
            TxLogEntry.batch_id,
            TxLogEntry.received_ms,
        )
        .where(TxLogEntry.seq >= from_seq)
        .order_by(TxLogEntry.seq)
        .limit(limit)
    )
    return [LogRow(s, t, h, b or 0, r) for s, t, h, b, r in session.execute(query)]


def read_batches(
    session: Session, from_id: int, limit: int, with_txs: bool
) -> list[tuple[BatchRecord, list[bytes]]]:
    """Batches from `from_id` on, each with its encoded transactions if asked."""
    records = session.scalars(
        select(BatchRecord).where(BatchRecord.id >= from_id).order_by(BatchRecord.id).limit(limit)
    ).all()
    out: list[tuple[BatchRecord, list[bytes]]] = []
    for record in records:
        txs: list[bytes] = []
        if with_txs:
            txs = list(
                session.scalars(
                    select(TxLogEntry.tx)
                    .where(TxLogEntry.batch_id == record.id)
                    .order_by(TxLogEntry.seq)
                )
            )
        out.append((record, txs))
    return out


def batch_ids(session: Session, from_id: int, limit: int) -> list[int]:
    query = select(BatchRecord.id).where(BatchRecord.id >= from_id).order_by(BatchRecord.id)
    return list(session.scalars(query.limit(limit)))


@dataclass(frozen=True, slots=True)
class _Recorded:
    batch_id: int
    new_root: bytes
    first_seq: int
    last_seq: int
    public_inputs: bytes


@dataclass(slots=True)
class Recovered:
    """A state rebuilt from the log, with the open batch's transactions applied."""

    builder: BatchBuilder
    last_seq: int
    open_first_seq: int  # the seq the open batch starts at
    root: bytes
    checkpoint: int | None = None  # the batch whose checkpoint the replay started from
    start_seq: int = 0  # the last seq that checkpoint includes (0: from genesis)
    skipped: tuple[str, ...] = ()  # checkpoints passed over, and why

    @property
    def replayed(self) -> int:
        """Log entries the replay applied."""
        return self.last_seq - self.start_seq


@dataclass(frozen=True, slots=True)
class _Start:
    """Where a replay starts: genesis, or a checkpoint's state after `batch_id`."""

    state: ExchangeState
    next_batch_id: int = 0
    last_seq: int = 0


# ------------------------------------------------------------------ checkpoints


def write_checkpoint(
    session: Session, batch_id: int, last_seq: int, root: bytes, state: bytes, keep: int
) -> None:
    """Store a checkpoint and drop all but the newest `keep`."""
    session.add(
        StateCheckpoint(
            batch_id=batch_id, last_seq=last_seq, root=root, state=state, created_ms=now_ms()
        )
    )
    session.flush()
    kept = select(StateCheckpoint.batch_id).order_by(StateCheckpoint.batch_id.desc()).limit(keep)
    session.execute(delete(StateCheckpoint).where(StateCheckpoint.batch_id.not_in(kept)))


def read_checkpoint(
    session: Session, max_batch_id: int | None, min_batch_id: int | None = None
) -> StateCheckpoint | None:
    """The newest checkpoint at or before `max_batch_id` (None: the newest), and at or after
    `min_batch_id` if given, whose root is its batch's recorded root."""
    query = (
        select(StateCheckpoint)
        .join(BatchRecord, BatchRecord.id == StateCheckpoint.batch_id)
        .where(
            BatchRecord.new_root == StateCheckpoint.root,
            BatchRecord.last_seq == StateCheckpoint.last_seq,
        )
        .order_by(StateCheckpoint.batch_id.desc())
        .limit(1)
    )
    if max_batch_id is not None:
        query = query.where(StateCheckpoint.batch_id <= max_batch_id)
    if min_batch_id is not None:
        query = query.where(StateCheckpoint.batch_id >= min_batch_id)
    return session.scalars(query).first()


def _restore(session: Session, batch_id: int, config: ExchangeConfig) -> _Start:
    """The checkpoint of `batch_id` as a replay start; RecoveryError if it does not check out."""
    found = session.get(StateCheckpoint, batch_id)
    record = session.get(BatchRecord, batch_id)
    if found is None or record is None:
        raise RecoveryError("its batch row is missing")
    if (found.root, found.last_seq) != (record.new_root, record.last_seq):
        raise RecoveryError(
            f"it records root 0x{found.root.hex()} after seq {found.last_seq}; the batch"
            f" records 0x{record.new_root.hex()} after seq {record.last_seq}"
        )
    try:
        state = snapshot.restore(found.state, config)
    except snapshot.SnapshotError as exc:
        raise RecoveryError(exc.message) from None
    if state.root() != found.root:
        raise RecoveryError("its snapshot holds another state than the batch's")
    return _Start(state, batch_id + 1, found.last_seq)


# --------------------------------------------------------------------- recovery


def replay(session: Session, config: ExchangeConfig) -> Recovered:
    """Rebuild the state: from the newest checkpoint that checks out, else from genesis."""
    skipped: list[str] = []
    newest_first = select(StateCheckpoint.batch_id).order_by(StateCheckpoint.batch_id.desc())
    for batch_id in list(session.scalars(newest_first)):
        try:
            recovered = _replay_from(session, config, _restore(session, batch_id, config))
        except RecoveryError as exc:
            skipped.append(f"checkpoint {batch_id}: {exc}")
            continue
        recovered.checkpoint, recovered.skipped = batch_id, tuple(skipped)
        return recovered
    recovered = _replay_from(session, config, _Start(ExchangeState(config)))
    recovered.skipped = tuple(skipped)
    return recovered


def _replay_from(session: Session, config: ExchangeConfig, start: _Start) -> Recovered:
    """Replay the log after `start`, re-cutting at the recorded boundaries and checking each.

    Transactions are applied authenticated: their signatures were checked when
    they were first applied.
    """
    recorded = [
        _Recorded(*row)
        for row in session.execute(
            select(
                BatchRecord.id,
                BatchRecord.new_root,
                BatchRecord.first_seq,
                BatchRecord.last_seq,
                BatchRecord.public_inputs,
            )
            .where(BatchRecord.id >= start.next_batch_id)
            .order_by(BatchRecord.id)
        )
    ]
    builder = BatchBuilder(start.state, start.next_batch_id)
    pending = iter(recorded)
    next_seq = open_first = start.last_seq + 1

    def cut_recorded() -> None:
        nonlocal open_first
        record = next(pending, None)
        batch_id = builder.next_batch_id
        if record is None or record.batch_id != batch_id:
            raise RecoveryError(f"batch {batch_id} was closed in the log but has no batch row")
        if (record.first_seq, record.last_seq) != (open_first, next_seq - 1):
            raise RecoveryError(
                f"batch {batch_id} records seqs {record.first_seq}..{record.last_seq},"
                f" the log has {open_first}..{next_seq - 1}"
            )
        inputs = builder.cut().public_inputs
        if inputs.new_root != record.new_root or inputs.encode() != record.public_inputs:
            raise RecoveryError(
                f"batch {batch_id}: the replayed root 0x{inputs.new_root.hex()} differs from the"
                f" recorded 0x{record.new_root.hex()} (was the exchange configuration changed?)"
            )
        open_first = next_seq

    rows = session.execute(
        select(TxLogEntry.seq, TxLogEntry.tx, TxLogEntry.batch_id)
        .where(TxLogEntry.seq > start.last_seq)
        .order_by(TxLogEntry.seq)
        .execution_options(yield_per=REPLAY_PAGE)
    )
    for seq, raw, batch_id in rows:
        if seq != next_seq:
            raise RecoveryError(f"the log jumps from seq {next_seq - 1} to {seq}")
        while batch_id is not None and batch_id > builder.next_batch_id:
            cut_recorded()
        if batch_id != builder.next_batch_id:
            raise RecoveryError(f"seq {seq} is in batch {batch_id}, after batch {batch_id} was cut")
        try:
            result = builder.add(decode_tx(raw, config.domain), authenticated=True)
        except CoreError as exc:
            result = exc
        if isinstance(result, CoreError):
            raise RecoveryError(
                f"seq {seq} is refused on replay ({result}):"
                " was the exchange configuration changed?"
            )
        next_seq += 1
    for _ in recorded[builder.next_batch_id - start.next_batch_id :]:
        cut_recorded()
    return Recovered(
        builder,
        next_seq - 1,
        open_first,
        builder.state.root(),
        start_seq=start.last_seq,
    )
