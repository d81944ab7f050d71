"""The prover's replica: a batch proven from its record leaves the replica exactly where
replaying it would, and a record that does not replay to itself is refused."""

from __future__ import annotations

import dataclasses

import pytest

from perpnet.bench.stf import workload
from perpnet.core.batch import Batch, BatchBuilder, PublicInputs, encode_diff
from perpnet.core.encoding import encode_tx
from perpnet.core.state import ExchangeState
from perpnet.prover.replica import BatchReplica, RecordedBatch, ReplicaDivergedError
from perpnet.stark.batch_bench import fresh_prices
from perpnet.stark.errors import StarkProverError

_COMPARED = (  # everything a later batch reads; the trees are compared through root()
    "accounts", "ids", "prices", "price_times", "funding_index", "last_funding_ms", "clock_ms",
    "next_deposit_id", "next_forced_id", "total_deposited", "total_withdrawn", "order_fills",
    "order_bodies",
)  # fmt: skip


def _records() -> tuple[BatchReplica, list[RecordedBatch]]:
    desk, setup, work = workload(3, 48, 12, 5)
    builder = BatchBuilder(ExchangeState(desk.config))
    batches: list[Batch] = []
    prices: dict[int, int] = {}
    for txs in [setup, *work]:
        for tx in fresh_prices(desk, txs, prices):
            assert not isinstance(builder.add(tx, authenticated=True), Exception)
        batches.append(builder.cut())
    return BatchReplica(desk.config), [_record(b) for b in batches]


def _record(batch: Batch) -> RecordedBatch:
    return RecordedBatch(
        batch.batch_id,
        batch.public_inputs.encode(),
        tuple(encode_tx(tx) for tx in batch.txs),
        encode_diff(batch.diff),
    )


def _view(state: ExchangeState) -> dict[str, object]:
    return {"root": state.root(), **{name: getattr(state, name) for name in _COMPARED}}


def test_proving_from_the_record_ends_where_replaying_does() -> None:
    replayed, records = _records()
    proven = BatchReplica(replayed.config)
    for record in records:
        replayed.advance(record)
        prepared = proven.prove_next(record)
        assert prepared.witness.rows_used > 0
        assert proven.next_batch_id == replayed.next_batch_id == record.batch_id + 1
        assert _view(proven.builder.state) == _view(replayed.builder.state)
    # and the next batch cut on either state is the same
    for replica in (replayed, proven):
        replica.builder.cut()
    assert _view(proven.builder.state) == _view(replayed.builder.state)


def _inputs(record: RecordedBatch, **changes: object) -> RecordedBatch:
    inputs = dataclasses.replace(PublicInputs.decode(record.public_inputs), **changes)
    return dataclasses.replace(record, public_inputs=inputs.encode())


def _tampered(records: list[RecordedBatch], tamper: str) -> RecordedBatch:
    record = records[1]
    inputs = PublicInputs.decode(record.public_inputs)
    if tamper == "drop a tx":
        return dataclasses.replace(record, txs=record.txs[:-1])
    if tamper == "other diff":
        return dataclasses.replace(record, state_diff=records[2].state_diff)
    if tamper == "undecodable diff":
        return dataclasses.replace(record, state_diff=record.state_diff[:-1])
    if tamper == "batch id":
        return _inputs(record, batch_id=7)
    # the proof binds a withdrawal's amount, not its recipient: only the replay sees this
    first, *rest = inputs.withdrawals
    assert first.recipient != b"\xee" * 20
    redirected = (dataclasses.replace(first, recipient=b"\xee" * 20), *rest)
    return _inputs(record, withdrawals=redirected)


TAMPERS = ["drop a tx", "other diff", "undecodable diff", "batch id", "withdrawal recipient"]


@pytest.mark.parametrize("tamper", TAMPERS)
def test_a_record_that_does_not_replay_to_itself_is_refused(tamper: str) -> None:
    replica, records = _records()
    replica.prove_next(records[0])
    with pytest.raises((StarkProverError, ReplicaDivergedError)):
        replica.prove_next(_tampered(records, tamper))
    # refused before replaying: untouched; after: back at genesis (maybe part way through)
    assert replica.next_batch_id == (1 if tamper == "undecodable diff" else 0)
    for good in records[replica.next_batch_id :]:  # and goes on from there
        replica.prove_next(good)


def test_only_the_next_batch_is_proven() -> None:
    replica, records = _records()
    replica.prove_next(records[0])
    with pytest.raises(ValueError, match="not the next"):
        replica.prove_next(records[2])
    assert replica.next_batch_id == 1  # untouched
