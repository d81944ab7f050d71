"""`perpnet bench prove`: batch proofs for the stf workload at several batch sizes.

The workload is `perpnet.bench.stf.workload` (trades against resting makers, with
withdrawals, transfers, oracle and funding ticks) plus a few deposits per batch.
The proven batch is the second one, so funding settlements of existing positions
are part of it. Prove time includes the witness (replaying the batch with the core).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Sequence

from perpnet.bench.report import machine, median
from perpnet.bench.stf import PRICES, workload
from perpnet.core.batch import Batch, BatchBuilder
from perpnet.core.crypto import PrivateKey
from perpnet.core.errors import CoreError
from perpnet.core.markets import USD
from perpnet.core.state import ExchangeState
from perpnet.core.txs import FundingTick, OraclePriceTick, SignedPrice, Tx
from perpnet.stark.batch_proof import prepare_batch, prove_prepared, verify_batch
from perpnet.stark.params import DEFAULT_PARAMS, security_bits
from perpnet.testkit import ORACLE_KEYS, Desk


def fresh_prices(desk: Desk, stream: Sequence[Tx], prices: dict[int, int]) -> list[Tx]:
    """`stream` with each funding tick preceded by oracle ticks at its own timestamp.

    The core refuses funding and trades on prices older than `max_price_age_ms`, and
    the stf workload's funding ticks jump the clock by the funding interval.
    `prices` carries the latest oracle prices from one call to the next.
    """
    out: list[Tx] = []
    for tx in stream:
        if isinstance(tx, OraclePriceTick):
            prices[tx.market_id] = tx.price
        elif isinstance(tx, FundingTick):
            for m, p in sorted(prices.items()):
                obs = tuple(
                    SignedPrice.create(k, m, p, tx.timestamp_ms, desk.config.domain)
                    for k in ORACLE_KEYS
                )
                out.append(OraclePriceTick(tx.timestamp_ms, m, p, obs))
        out.append(tx)
    return out


def build_batch(size: int, accounts: int, seed: int) -> tuple[ExchangeState, Batch]:
    """A funded exchange, one warm-up batch applied, and the next batch of `size` txs
    (plus the oracle ticks that keep prices fresh at its funding tick)."""
    desk, setup, work = workload(2, size, accounts, seed)
    prices: dict[int, int] = {}
    warm = fresh_prices(desk, [*setup, *work[0]], prices)
    txs = fresh_prices(desk, work[1], prices)
    state = ExchangeState(desk.config)
    builder = BatchBuilder(state)
    for tx in warm:
        builder.add(tx, authenticated=True)
    builder.cut()
    before = copy.deepcopy(state)
    fresh = PrivateKey.from_seed(f"batch-bench-{seed}".encode())
    # a deposit every 256 transactions, the first to a new account
    for k in range(len(PRICES) + 1, len(txs), 256):
        deposit = desk.deposit(fresh, (k + 1) * USD)
        txs[k] = dataclasses.replace(deposit, timestamp_ms=txs[k].timestamp_ms)
    for tx in txs:
        if isinstance(builder.add(tx, authenticated=True), CoreError):
            raise AssertionError(f"the workload's {type(tx).__name__} was refused")
    return before, builder.cut()


def measure(size: int, repeats: int, accounts: int = 1_000, seed: int = 1) -> dict[str, object]:
    before, batch = build_batch(size, accounts, seed)
    proves, verifies, phases = [], [], []
    proof = b""
    shape = (0, 0, 0)
    for _ in range(repeats):
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        prep = prepare_batch(before, batch)
        timings["witness"] = time.perf_counter() - t0
        bp = prove_prepared(prep, timings=timings)
        proves.append(time.perf_counter() - t0)
        phases.append(timings)
        proof = bp.encode()
        shape = (prep.witness.trace.shape[1], prep.witness.trace.shape[0], prep.air.aux_width)
        t1 = time.perf_counter()
        verify_batch(batch.public_inputs, batch.diff, proof)
        verifies.append(time.perf_counter() - t1)
    rows, width, aux = shape
    return {
        "transactions": len(batch.txs),
        "prove_s": round(median(proves), 3),
        "verify_s": round(median(verifies), 4),
        "proof_bytes": len(proof),
        "trace_rows": rows,
        "trace_columns": width,
        "aux_extension_columns": aux,
        "security_bits": security_bits(DEFAULT_PARAMS, rows),
        "phases_s": {k: round(median([p.get(k, 0.0) for p in phases]), 3) for k in phases[0]},
    }


def run(sizes: Sequence[int] = (64, 256, 1024, 4096), repeats: int = 3) -> dict[str, object]:
    return {
        "benchmark": "prove",
        "goals": {"prove_s_1024": 2.0, "verify_s": 0.05, "proof_bytes": 150_000, "bits": 96},
        "results": [measure(n, repeats) for n in sizes],
        "machine": machine(),
    }


def main() -> None:
    print(json.dumps(run(), indent=2))


if __name__ == "__main__":
    main()
