"""`perpnet bench stf`: transactions per second through the state machine.

The workload is what a sequencer applies: mostly trades (IOC takers against
large resting makers, as an order book produces them), with withdrawals,
transfers, oracle ticks and funding ticks mixed in, cut into batches of
1,024 whose state root is computed after each batch. Signing happens before
the clock starts (it is the traders' work). Signatures are checked either by
the state machine itself, on each order's first fill, or once at admission
(`authenticated`), as the sequencer does; both are reported.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence

from perpnet.bench.report import machine, median
from perpnet.core.crypto import PrivateKey
from perpnet.core.errors import CoreError
from perpnet.core.markets import USD
from perpnet.core.orders import SignedOrder, TimeInForce
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Trade, Tx
from perpnet.testkit import Desk

PRICES = {0: 50_000 * USD, 1: 3_000 * USD, 2: 150 * USD}


def workload(
    batches: int, batch_size: int, accounts: int, seed: int
) -> tuple[Desk, list[Tx], list[list[Tx]]]:
    """A funded exchange (setup) and `batches` batches of signed transactions."""
    rng = random.Random(seed)
    desk = Desk()
    keys = [PrivateKey.from_seed(f"stf-{seed}-{i}".encode()) for i in range(accounts)]
    setup: list[Tx] = [desk.price(m, p) for m, p in PRICES.items()]
    setup += [desk.deposit(k, 1_000_000 * USD) for k in keys]
    nonces = [0] * accounts
    out: list[list[Tx]] = []
    markets = desk.config.markets
    for _ in range(batches):
        batch: list[Tx] = [desk.funding(*((m, rng.randint(-100_000, 100_000)) for m in PRICES))]
        makers: list[tuple[int, SignedOrder, list[int]]] = []
        while len(batch) < batch_size:
            roll = rng.random()
            if roll < 0.01:
                batch.extend(
                    desk.price(m, p + rng.randint(-5, 5) * markets.get(m).tick_size)
                    for m, p in PRICES.items()
                )
                continue
            if roll < 0.02:
                who = rng.randrange(accounts)
                batch.append(desk.withdraw(keys[who], 10 * USD, nonces[who]))
                nonces[who] += 1
                continue
            if roll < 0.03:
                who, to = rng.sample(range(accounts), 2)
                batch.append(desk.transfer(keys[who], keys[to].address, 5 * USD, nonces[who]))
                nonces[who] += 1
                continue
            if not makers or rng.random() < 0.08:
                market_id = rng.choice(list(PRICES))
                market = markets.get(market_id)
                who = rng.randrange(accounts)
                is_buy = rng.random() < 0.5
                size = market.step_size * 200
                price = PRICES[market_id] + (-1 if is_buy else 1) * market.tick_size * rng.randint(
                    0, 20
                )
                makers.append((who, desk.order(keys[who], market_id, is_buy, size, price), [size]))
                if len(makers) > 64:
                    makers.pop(0)
            who, maker, left = rng.choice(makers)
            taker_id = rng.randrange(accounts)
            if taker_id == who or left[0] == 0:
                continue
            market = markets.get(maker.order.market_id)
            size = min(left[0], market.step_size * rng.randint(1, 20))
            left[0] -= size
            taker = desk.order(
                keys[taker_id],
                maker.order.market_id,
                not maker.order.is_buy,
                size,
                maker.order.price,
                tif=TimeInForce.IOC,
            )
            batch.append(Trade(desk.tick(), maker, taker, size, maker.order.price))
        out.append(batch[:batch_size])
    return desk, setup, out


def _run_once(
    desk: Desk, setup: Sequence[Tx], batches: Sequence[Sequence[Tx]], authenticated: bool
) -> dict[str, float]:
    state = ExchangeState(desk.config)
    for tx in setup:
        state.apply(tx, authenticated=True)
    state.root()
    apply_s = root_s = 0.0
    refused = 0
    for batch in batches:
        t0 = time.perf_counter()
        for tx in batch:
            try:
                state.apply(tx, authenticated=authenticated)
            except CoreError:
                refused += 1
        t1 = time.perf_counter()
        state.root()
        root_s += time.perf_counter() - t1
        apply_s += t1 - t0
    n = sum(len(b) for b in batches)
    return {
        "tx_per_s": n / (apply_s + root_s),
        "apply_s": apply_s,
        "root_s": root_s,
        "refused": refused,
    }


def _baseline(batches: Sequence[Sequence[Tx]]) -> float:
    """A bare ledger (two balance and two position updates per trade): the floor of Python."""
    collateral: dict[bytes, int] = {}
    positions: dict[tuple[bytes, int], int] = {}
    t0 = time.perf_counter()
    for batch in batches:
        for tx in batch:
            if isinstance(tx, Trade):
                maker, taker = tx.maker.order, tx.taker.order
                quote = tx.size * tx.price
                sign = 1 if maker.is_buy else -1
                collateral[maker.owner] = collateral.get(maker.owner, 0) - sign * quote
                collateral[taker.owner] = collateral.get(taker.owner, 0) + sign * quote
                mk, tk = (maker.owner, maker.market_id), (taker.owner, maker.market_id)
                positions[mk] = positions.get(mk, 0) + sign * tx.size
                positions[tk] = positions.get(tk, 0) - sign * tx.size
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


def run(
    batches: int = 10,
    batch_size: int = 1024,
    accounts: int = 1_000,
    seed: int = 1,
    repeats: int = 5,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, object]:
    desk, setup, work = workload(batches, batch_size, accounts, seed)
    kinds: dict[str, int] = {}
    for batch in work:
        for tx in batch:
            kinds[type(tx).__name__] = kinds.get(type(tx).__name__, 0) + 1
    modes = (
        ("authenticated", True, repeats),
        ("verifying_signatures", False, max(1, repeats // 2)),
    )
    total, done = sum(n for _, _, n in modes), 0
    results: dict[str, object] = {}
    baseline = median([_baseline(work) for _ in range(repeats)])
    for mode, authenticated, n in modes:
        runs = []
        for _ in range(n):
            runs.append(_run_once(desk, setup, work, authenticated))
            done += 1
            if on_progress is not None:
                on_progress(done, total)
        tps = median([r["tx_per_s"] for r in runs])
        results[mode] = {
            "tx_per_s_median": round(tps),
            "tx_per_s_runs": [round(r["tx_per_s"]) for r in runs],
            "apply_s_median": round(median([r["apply_s"] for r in runs]), 4),
            "root_s_median": round(median([r["root_s"] for r in runs]), 4),
            "ratio_to_bare_ledger": round(tps / baseline, 4),
            "refused": runs[0]["refused"],
        }
    return {
        "benchmark": "stf",
        "parameters": {
            "batches": batches,
            "batch_size": batch_size,
            "accounts": accounts,
            "seed": seed,
            "repeats": repeats,
        },
        "mix": kinds,
        "goal_tx_per_s": 20_000,
        "baseline_bare_ledger_tx_per_s": round(baseline),
        **results,
        "machine": machine(),
    }


def main() -> None:
    print(json.dumps(run(), indent=2))


if __name__ == "__main__":
    main()
