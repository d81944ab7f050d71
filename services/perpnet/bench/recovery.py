"""`perpnet bench recovery`: sequencer restart time with and without state checkpoints.

A log of `txs` transactions (the `perpnet bench stf` mix: mostly trades) is
written to a fresh SQLite database as the sequencer writes it: entries in
groups of 256, batches of `batch_size`, and a checkpoint at every
`checkpoint_batches`-th cut (the newest 3 kept). Building the log also times
what a checkpoint costs the sequencer: `capture` is the part on its writer
task (the hot path), `encode` runs on a worker thread, `write` on the
database thread.

Recovery is then `perpnet.sequencer.store.replay`, exactly what a restarting
sequencer runs: first with the checkpoints (it restores the newest and replays
the log after it), then with them deleted (the whole log). Both must reach
the same root. `restore_only` is what a follower spends on a checkpoint it
fetched. Medians of `repeats` runs, in wall-clock seconds and in the
process's CPU seconds (steadier on a shared machine).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete
from sqlalchemy.orm import Session

from perpnet.bench.report import machine, median
from perpnet.bench.stf import workload
from perpnet.core import snapshot
from perpnet.core.batch import BatchBuilder
from perpnet.core.crypto import keccak
from perpnet.core.encoding import encode_tx
from perpnet.core.errors import CoreError
from perpnet.core.state import ExchangeConfig, ExchangeState
from perpnet.core.txs import Tx
from perpnet.runtime.db import make_engine, upgrade
from perpnet.runtime.models import BatchRecord, StateCheckpoint
from perpnet.sequencer import store

GROUP = 256
KEEP = 3
T = TypeVar("T")


def _transactions(txs: int, seed: int) -> tuple[ExchangeConfig, list[Tx]]:
    batches = -(-txs // 1024)
    desk, setup, work = workload(batches, 1024, 1_000, seed)
    flat = list(setup) + [tx for batch in work for tx in batch]
    return desk.config, flat[:txs]


def _write_log(
    session_of: Callable[[], Session],
    config: ExchangeConfig,
    txs: list[Tx],
    batch_size: int,
    checkpoint_batches: int,
) -> dict[str, Any]:
    """The sequencer's writes for `txs`; returns the log size and checkpoint costs."""
    builder = BatchBuilder(ExchangeState(config))
    rows: list[dict[str, Any]] = []
    cuts: list[BatchRecord] = []
    images: list[tuple[int, int, snapshot.Image]] = []
    costs: dict[str, list[float]] = {"capture_s": [], "encode_s": [], "write_s": []}
    sizes: list[int] = []
    seq = 0
    first = 1

    def flush() -> None:
        with session_of() as session, session.begin():
            store.write(session, rows, cuts)
        rows.clear()
        cuts.clear()
        for batch_id, last_seq, image in images:
            t0 = time.perf_counter()
            data = snapshot.encode(image, config)
            t1 = time.perf_counter()
            with session_of() as session, session.begin():
                store.write_checkpoint(session, batch_id, last_seq, image.root, data, KEEP)
            costs["encode_s"].append(t1 - t0)
            costs["write_s"].append(time.perf_counter() - t1)
            sizes.append(len(data))
        images.clear()

    for tx in txs:
        if isinstance(builder.add(tx, authenticated=True), CoreError):
            continue
        seq += 1
        raw = encode_tx(tx)
        rows.append(
            {
                "seq": seq,
                "tx_hash": keccak(raw),
                "tx": raw,
                "batch_id": builder.next_batch_id,
                "received_ms": 0,
                "applied_ms": 0,
            }
        )
        if len(builder) >= batch_size:
            batch = builder.cut()
            cuts.append(store.batch_record(batch, first, seq))
            first = seq + 1
            if checkpoint_batches and (batch.batch_id + 1) % checkpoint_batches == 0:
                t0 = time.perf_counter()
                images.append((batch.batch_id, seq, snapshot.capture(builder.state)))
                costs["capture_s"].append(time.perf_counter() - t0)
        if len(rows) >= GROUP:
            flush()
    flush()
    return {
        "logged_txs": seq,
        "batches": builder.next_batch_id,
        "open_batch_txs": len(builder),
        "checkpoints_written": len(sizes),
        "checkpoint_bytes_newest": sizes[-1] if sizes else 0,
        **{f"checkpoint_{k}_median": round(median(v), 4) for k, v in costs.items() if v},
        "checkpoint_capture_s_max": round(max(costs["capture_s"], default=0.0), 4),
    }


def run(
    txs: int = 20_000,
    batch_size: int = 512,
    checkpoint_batches: int = 10,
    seed: int = 1,
    repeats: int = 3,
) -> dict[str, object]:
    config, work = _transactions(txs, seed)
    with tempfile.TemporaryDirectory(prefix="perpnet-recovery-") as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'seq.db'}")
        try:
            upgrade(engine)

            def session_of() -> Session:
                return Session(engine)

            written = _write_log(session_of, config, work, batch_size, checkpoint_batches)

            def recover() -> tuple[tuple[float, float], store.Recovered]:
                with session_of() as session:
                    return _timed(lambda: store.replay(session, config))

            with_cp = [recover() for _ in range(repeats)]
            with session_of() as session:
                newest = session.get(StateCheckpoint, with_cp[0][1].checkpoint or -1)
                blob = b"" if newest is None else newest.state
            restore = [_timed(lambda: snapshot.restore(blob, config))[0] for _ in range(repeats)]
            with session_of() as session, session.begin():
                session.execute(delete(StateCheckpoint))
            without = [recover() for _ in range(repeats)]
        finally:
            engine.dispose()
    recovered = with_cp[0][1]
    assert recovered.root == without[0][1].root, "checkpoint recovery reached another root"
    return {
        "benchmark": "recovery",
        "parameters": {
            "txs": txs,
            "batch_size": batch_size,
            "checkpoint_batches": checkpoint_batches,
            "seed": seed,
            "repeats": repeats,
        },
        "log": written,
        "full_replay": {
            **_medians([t for t, _ in without]),
            "replayed_txs": without[0][1].replayed,
        },
        "from_checkpoint": {
            **_medians([t for t, _ in with_cp]),
            "checkpoint_batch": recovered.checkpoint,
            "replayed_txs": recovered.replayed,
            "restore_only": _medians(restore) if blob else None,
        },
        "speedup_cpu": round(
            median([t[1] for t, _ in without]) / median([t[1] for t, _ in with_cp]), 1
        ),
        "machine": machine(),
    }


def _timed(work: Callable[[], T]) -> tuple[tuple[float, float], T]:
    """(wall seconds, CPU seconds) and what `work` returned."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return (time.perf_counter() - wall, time.process_time() - cpu), result


def _medians(times: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "seconds_median": round(median([t[0] for t in times]), 3),
        "cpu_seconds_median": round(median([t[1] for t in times]), 3),
    }


def main() -> None:
    print(json.dumps(run(), indent=2))
