"""When and how the sequencer writes state checkpoints, off its hot path.

At a cut that makes one due (`checkpoint_batches` batches or
`checkpoint_txs` log entries since the last), the writer task freezes the
state (`snapshot.capture`: references and fill amounts, no encoding) while it
stands exactly at the batch boundary. Once the batch row is committed,
a background task encodes the image on a worker thread and stores it on the
database thread, keeping the newest `checkpoint_keep`. Encoding grows with
the state (every account and every order ever filled), so after a checkpoint
that took t seconds the next waits at least 9 t: checkpoints take at most a
tenth of the time however large the state gets. A checkpoint is only an
optimisation: one that fails to be written is logged and the next due one is
tried; the log stays the source of truth.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import partial

from prometheus_client import Counter, Gauge, Histogram

from perpnet.core import snapshot
from perpnet.core.state import ExchangeConfig, ExchangeState
from perpnet.runtime.db import Database
from perpnet.sequencer import store

SPACING = 9  # after a checkpoint that took t seconds, none for SPACING * t
CHECKPOINTS = Counter(
    "perpnet_sequencer_checkpoints", "State checkpoints by outcome: written, failed.", ("outcome",)
)
CAPTURE_SECONDS = Histogram(
    "perpnet_sequencer_checkpoint_capture_seconds",
    "Time the writer spends freezing the state for a checkpoint (the part on the hot path).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
CHECKPOINT_BYTES = Gauge("perpnet_sequencer_checkpoint_bytes", "Size of the newest checkpoint.")
CHECKPOINT_BATCH = Gauge(
    "perpnet_sequencer_checkpoint_batch_id", "The batch of the newest checkpoint written."
)


@dataclass(frozen=True, slots=True)
class _Due:
    batch_id: int
    last_seq: int
    image: snapshot.Image


class Checkpointer:
    def __init__(
        self,
        db: Database,
        config: ExchangeConfig,
        *,
        every_batches: int,
        every_txs: int,
        keep: int,
        log: logging.Logger,
    ) -> None:
        self.db = db
        self.config = config
        self.every_batches = every_batches
        self.every_txs = every_txs
        self.keep = keep
        self.log = log
        self._last = (-1, 0)  # (batch id, last seq) of the newest checkpoint taken
        self._due: _Due | None = None
        self._task: asyncio.Task[None] | None = None
        self._not_before = 0.0  # time.monotonic() before which no checkpoint is taken

    @property
    def enabled(self) -> bool:
        return self.keep > 0 and (self.every_batches > 0 or self.every_txs > 0)

    def reset(self, batch_id: int, last_seq: int) -> None:
        """After a recovery: count from where the state was rebuilt; forget any uncommitted cut."""
        self._last = (batch_id, last_seq)
        self._due = None

    def on_cut(self, batch_id: int, last_seq: int, state: ExchangeState) -> None:
        """Called right after `batch_id` is cut, before anything else is applied."""
        if not self.enabled or self._due is not None or self.busy:
            return
        if time.monotonic() < self._not_before:
            return
        last_batch, last_seq_taken = self._last
        due_batches = self.every_batches and batch_id - last_batch >= self.every_batches
        due_txs = self.every_txs and last_seq - last_seq_taken >= self.every_txs
        if not (due_batches or due_txs):
            return
        started = time.perf_counter()
        self._due = _Due(batch_id, last_seq, snapshot.capture(state))
        CAPTURE_SECONDS.observe(time.perf_counter() - started)
        self._last = (batch_id, last_seq)

    def committed(self) -> None:
        """The cuts so far are durable: write the checkpoint taken at one of them, if any."""
        due, self._due = self._due, None
        if due is not None:
            self._task = asyncio.ensure_future(self._write(due))

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _write(self, due: _Due) -> None:
        started = time.perf_counter()
        try:
            data = await asyncio.to_thread(snapshot.encode, due.image, self.config)
            await self.db.run(
                partial(
                    store.write_checkpoint,
                    batch_id=due.batch_id,
                    last_seq=due.last_seq,
                    root=due.image.root,
                    state=data,
                    keep=self.keep,
                )
            )
        except Exception:
            CHECKPOINTS.labels("failed").inc()
            self.log.exception("checkpoint not written", extra={"batch_id": due.batch_id})
            return
        seconds = time.perf_counter() - started
        self._not_before = time.monotonic() + SPACING * seconds
        CHECKPOINTS.labels("written").inc()
        CHECKPOINT_BYTES.set(len(data))
        CHECKPOINT_BATCH.set(due.batch_id)
        self.log.info(
            "checkpoint written",
            extra={
                "batch_id": due.batch_id,
                "last_seq": due.last_seq,
                "bytes": len(data),
                "seconds": round(seconds, 3),
            },
        )

    async def close(self) -> None:
        """Let a write in progress finish (it is short), so a clean stop leaves no half work."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
