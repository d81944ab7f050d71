"""The sequencer: the single writer of L2 state (`python -m perpnet.sequencer`).

gRPC `perpnet.v1.Sequencer` (proto/perpnet/v1/sequencer.proto):
- SubmitTx(encoded tx): decode strictly (bad bytes: INVALID_ARGUMENT), apply
  with the core's BatchBuilder (refused: FAILED_PRECONDITION; both say
  "<ErrorCode>: message" and change nothing), write the log entry and commit
  (SQLite synchronous=FULL, so fsynced), and only then reply (seq, tx hash,
  batch id). Idempotent by tx hash: a transaction already logged gets its
  original seq back with `duplicate`, so a client that lost a reply retries safely.
- GetState, GetAccount (leaf and Merkle proof), GetBatch, StreamBatches, GetTxs,
  StreamTxs, GetCheckpoint: reads. State reads see only committed transactions; log and batch
  reads come from the database, so followers (margin engine, gateway, prover,
  bridge) catch up from any seq or batch without Redis.

One writer. Submissions queue for a single writer task, which takes up to
`group_max_txs` of them at a time: it applies them (signatures checked by the
core unless `trust_callers`), writes their log entries (and any batch cut
among them) in one database transaction, and then answers all of them. This
is group commit: under concurrent load one fsync covers a group instead of
one transaction. The writer holds a lock from the first apply of a group to
its commit, and state reads take it, so no reader sees state that is not
durable. If a write fails, the group is answered UNAVAILABLE and the state
is rebuilt from the log (NOT_SERVING until then): memory never runs ahead of
the log.

Batches are cut when the open batch reaches `batch_max_txs` (inside the group
that fills it) or every `batch_interval_ms` after the previous cut; an
interval with no transactions cuts nothing unless `cut_empty_batches`. Batch
ids count from 0, as the rollup contract's next_batch_id does. A cut writes
the batch row (roots, public inputs, state diff, seq range, SEQUENCED); each
log entry already names its batch when written, so TXLOG entries carry it.

Redis: after commits, a publisher task XADDs each log entry to
topics.TXLOG (seq, tx, batch_id) and each batch to topics.BATCHES
(batch_id), resuming from each stream's tail, so an entry committed just
before a crash or during a Redis outage is published later. Redis is not a
readiness dependency: acknowledgements never wait for it.

Recovery (at start, health NOT_SERVING until done): restore the newest state
checkpoint that checks out and replay only the log after it, with signatures
trusted (they were checked when first applied), re-cutting at the recorded
batch boundaries; every recorded batch's root and public inputs must come out
identical, or start-up stops with an error naming the batch. A checkpoint
checks out if its root is its batch's recorded root and its snapshot
(perpnet.core.snapshot: versioned, checksummed) restores to that root; one
that does not, or from which the log does not replay, is logged and skipped
for the next older one, and in the end for genesis. The replay runs at the
state machine's authenticated speed (about 4,000 trades/s), so the default
checkpoint cadence (perpnet.sequencer.checkpoints: every 50 batches or
20,000 log entries, the newest 3 kept) bounds a restart to a few seconds of
replay plus the restore. GetCheckpoint serves checkpoints to followers.

Settings: perpnet.sequencer.settings. Metrics: perpnet.sequencer.metrics.
"""
