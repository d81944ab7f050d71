"""Throughput and latency of the matching engine on a mixed, exchange-like workload.

In the spirit of exchange-core's benchmark: mostly GTC limits a few hundred
ticks around a drifting mid, IOC and market takers, cancels and amends, from a
few thousand accounts on BTC-USD. The workload is generated once,
deterministically from the seed, by driving a reference engine (so every
cancel and amend names an order that is live at that moment); the timed runs
replay it on fresh engines and time only the engine calls.

Orders carry their real EIP-712 hash but a placeholder signature: the matcher
never verifies signatures (the gateway does), and hashing is the gateway's
cost too, so it is paid before the clock starts.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from perpnet.bench.report import machine, percentile
from perpnet.core.crypto import keccak
from perpnet.core.markets import DEFAULT_MARKETS, USD
from perpnet.core.matching import MatchingEngine
from perpnet.core.orders import Order, OrderKind, SignedOrder, TimeInForce
from perpnet.core.typed_data import Domain

MARKET = DEFAULT_MARKETS[0]  # BTC-USD: tick 1 USD, step 0.0001 BTC
START_MID = 60_000 * USD
ACCOUNTS = 2_000
SPREAD_TICKS = 300  # passive limits sit up to this far from the mid
MIX = (("limit", 0.50), ("taker", 0.20), ("cancel", 0.20), ("amend", 0.10))
PLACE, CANCEL, AMEND = 0, 1, 2
NO_SIGNATURE = bytes(65)

Op = tuple[int, Any, Any, int]  # (code, first argument, second argument, now_ms)


class _Generator:
    """Draws ops from the mix, keeping a reference engine to know what is live."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.domain = Domain()
        self.accounts = [
            keccak(b"bench-account" + i.to_bytes(4, "big"))[:20] for i in range(ACCOUNTS)
        ]
        self.engine = MatchingEngine()
        self.mid: int = START_MID
        self.nonce = 0
        self.live: list[bytes] = []  # hashes placed that may still rest (pruned lazily)
        self.fills = 0
        self.kinds: Counter[str] = Counter()

    def order(self, owner: bytes, is_buy: bool, size: int, price: int, **kw: Any) -> SignedOrder:
        self.nonce += 1
        order = Order(owner, 0, MARKET.market_id, is_buy, size, price, nonce=self.nonce, **kw)
        return SignedOrder(order, NO_SIGNATURE, order.digest(self.domain))

    def passive_price(self, is_buy: bool) -> int:
        """Mostly near the touch, thinning out to SPREAD_TICKS; 5 % cross by a few ticks."""
        rng = self.rng
        if rng.random() < 0.05:
            ticks = -rng.randint(1, 5)
        else:
            ticks = min(int(rng.expovariate(1 / 40)), SPREAD_TICKS) + 1
        offset = ticks * MARKET.tick_size
        return self.mid - offset if is_buy else self.mid + offset

    def limit(self) -> SignedOrder:
        is_buy = self.rng.random() < 0.5
        size = self.rng.randint(1, 20) * MARKET.step_size
        owner = self.rng.choice(self.accounts)
        return self.order(owner, is_buy, size, self.passive_price(is_buy))

    def taker(self) -> SignedOrder:
        rng = self.rng
        is_buy = rng.random() < 0.5
        size = rng.randint(1, 40) * MARKET.step_size
        owner = rng.choice(self.accounts)
        if rng.random() < 0.25:
            self.kinds["market"] += 1
            worst = 1_000 * MARKET.tick_size
            price = self.mid + worst if is_buy else self.mid - worst
            return self.order(
                owner, is_buy, size, price, kind=OrderKind.MARKET, tif=TimeInForce.IOC
            )
        self.kinds["ioc"] += 1
        reach = rng.randint(0, 20) * MARKET.tick_size
        price = self.mid + reach if is_buy else self.mid - reach
        return self.order(owner, is_buy, size, price, tif=TimeInForce.IOC)

    def pick_live(self) -> SignedOrder | None:
        """A uniformly random live order, or None when the book is empty."""
        live = self.live
        while live:
            i = self.rng.randrange(len(live))
            found = self.engine.resting(live[i])
            if found is not None:
                return found.order
            live[i] = live[-1]
            live.pop()
        return None

    def amend_of(self, old: SignedOrder, remaining: int) -> SignedOrder:
        """Half shrink in place (keeps priority), half move the price (back of the queue)."""
        o = old.order
        if self.rng.random() < 0.5 and remaining > MARKET.step_size:
            size = self.rng.randint(1, remaining // MARKET.step_size - 1) * MARKET.step_size
            return self.order(o.owner, o.is_buy, size, o.price)
        size = self.rng.randint(1, 20) * MARKET.step_size
        return self.order(o.owner, o.is_buy, size, self.passive_price(o.is_buy))

    def step(self, now_ms: int) -> Op:
        rng = self.rng
        if rng.random() < 0.02:
            self.mid += rng.choice((-1, 1)) * MARKET.tick_size
        draw = rng.random()
        kind = "limit"
        for name, share in MIX:
            kind = name
            if draw < share:
                break
            draw -= share
        if kind in ("cancel", "amend"):
            target = self.pick_live()
            if target is None:
                kind = "limit"
            elif kind == "cancel":
                self.kinds["cancel"] += 1
                self.engine.cancel(target.hash, target.order.owner, now_ms)
                return (CANCEL, target.hash, target.order.owner, now_ms)
            else:
                found = self.engine.resting(target.hash)
                assert found is not None
                new = self.amend_of(target, found.remaining)
                self.kinds["amend"] += 1
                self.fills += len(self.engine.amend(target.hash, new, now_ms).fills)
                self.live.append(new.hash)
                return (AMEND, target.hash, new, now_ms)
        if kind == "limit":
            self.kinds["limit"] += 1
            signed = self.limit()
        else:
            signed = self.taker()
        result = self.engine.place(signed, now_ms)
        self.fills += len(result.fills)
        if result.resting:
            self.live.append(signed.hash)
        return (PLACE, signed, None, now_ms)


def workload(ops: int, seed: int) -> tuple[list[Op], _Generator]:
    gen = _Generator(seed)
    return [gen.step(i // 10) for i in range(ops)], gen


def _drive(book: MatchingEngine | _DictBaseline, ops: Sequence[Op]) -> int:
    """Run `ops` on `book`; nanoseconds spent in the loop (methods bound outside it)."""
    place, cancel, amend = book.place, book.cancel, book.amend
    start = time.perf_counter_ns()
    for code, first, second, now_ms in ops:
        if code == PLACE:
            place(first, now_ms)
        elif code == CANCEL:
            cancel(first, second, now_ms)
        else:
            amend(first, second, now_ms)
    return time.perf_counter_ns() - start


def _replay(ops: Sequence[Op]) -> int:
    """Run `ops` on a fresh engine; nanoseconds spent in the loop."""
    return _drive(MatchingEngine(), ops)


def _latencies(ops: Sequence[Op]) -> list[int]:
    """Each op timed on its own, in a separate pass from the throughput runs."""
    engine = MatchingEngine()
    clock = time.perf_counter_ns
    calls: tuple[Callable[..., object], ...] = (engine.place, engine.cancel, engine.amend)
    out = []
    for code, first, second, now_ms in ops:
        call = calls[code]
        if code == PLACE:
            start = clock()
            call(first, now_ms)
        else:
            start = clock()
            call(first, second, now_ms)
        out.append(clock() - start)
    return out


class _DictBaseline:
    """The floor: one method call and one dict write or delete per op."""

    def __init__(self) -> None:
        self.orders: dict[bytes, SignedOrder] = {}

    def place(self, signed: SignedOrder, now_ms: int) -> None:
        self.orders[signed.hash] = signed

    def cancel(self, order_hash: bytes, owner: bytes, now_ms: int) -> None:
        self.orders.pop(order_hash, None)

    def amend(self, order_hash: bytes, new: SignedOrder, now_ms: int) -> None:
        self.orders.pop(order_hash, None)
        self.orders[new.hash] = new


def _baseline(ops: Sequence[Op]) -> int:
    return _drive(_DictBaseline(), ops)


def _percentile(sorted_ns: Sequence[int], fraction: float) -> float:
    return round(percentile(sorted_ns, fraction) / 1_000, 2)


def _timer_overhead_ns() -> int:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(10_000):
        start = clock()
        samples.append(clock() - start)
    return sorted(samples)[len(samples) // 2]


def run(ops: int = 200_000, seed: int = 1, repeats: int = 5) -> dict[str, object]:
    """Generate the workload, then time `repeats` fresh replays of it; JSON-serialisable."""
    generated = time.perf_counter()
    op_list, gen = workload(ops, seed)
    generated = time.perf_counter() - generated
    gc.collect()
    gc.freeze()  # the workload's objects are not the engine's garbage to scan
    try:
        runs = [ops / (_replay(op_list) / 1e9) for _ in range(repeats)]
        baseline = [ops / (_baseline(op_list) / 1e9) for _ in range(repeats)]
        latencies = sorted(_latencies(op_list))
    finally:
        gc.unfreeze()
    median = statistics.median(runs)
    baseline_median = statistics.median(baseline)
    return {
        "benchmark": "matching",
        "parameters": {
            "ops": ops,
            "seed": seed,
            "repeats": repeats,
            "market": MARKET.symbol,
            "accounts": ACCOUNTS,
            "spread_ticks": SPREAD_TICKS,
            "mix": dict(MIX),
        },
        "machine": machine(),
        "ops_per_s": round(median),
        "ops_per_s_runs": [round(r) for r in runs],
        "latency_us": {
            "method": "separate pass, every op timed alone with perf_counter_ns",
            "timer_overhead_ns": _timer_overhead_ns(),
            "p50": _percentile(latencies, 0.50),
            "p99": _percentile(latencies, 0.99),
            "p999": _percentile(latencies, 0.999),
            "max": round(latencies[-1] / 1_000, 2),
        },
        "op_counts": dict(sorted(gen.kinds.items())),
        "gc": "enabled, default thresholds; the pre-built workload is gc.freeze()-d",
        "fills": gen.fills,
        "resting_at_end": len(gen.engine.snapshot().orders),
        "baseline": {
            "name": "one method call plus one dict write/delete per op",
            "ops_per_s": round(baseline_median),
            "engine_over_baseline": round(median / baseline_median, 3),
        },
        "workload_generation_s": round(generated, 2),
    }


def main() -> None:
    print(json.dumps(run(), indent=2))


if __name__ == "__main__":
    main()
