"""Sequencer throughput and ack latency over loopback gRPC, durable log included.

A real sequencer process (SQLite, synchronous=FULL, a private redis-server
when one is installed) receives `deposits` deposits one at a time (L1 order
forces it), then `trades` trades from `concurrency` concurrent clients, each
waiting for its acknowledgement before sending the next. Trades carry one
timestamp, so any interleaving is in clock order, and their signatures are
checked by the sequencer (two orders each). Signing happens before the clock
starts. The figure that matters for group commit is trades at concurrency > 1:
run it with `group_max_txs=1` to see one fsync per transaction.

    python -m perpnet.sequencer.bench [trades] [concurrency] [group_max_txs]
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from perpnet.bench.report import machine, percentile
from perpnet.core.encoding import encode_tx
from perpnet.core.markets import USD
from perpnet.core.orders import TimeInForce
from perpnet.core.txs import Trade
from perpnet.proto.v1 import sequencer_pb2 as pb
from perpnet.proto.v1 import sequencer_pb2_grpc as pb_grpc
from perpnet.runtime.channels import is_serving, open_channel
from perpnet.runtime.localproc import free_port, spawn, start_redis, wait_for_port
from perpnet.testkit import ORACLE_KEYS, Desk, trader

BTC = 0
PRICE = 50_000 * USD


def workload(deposits: int, trades: int) -> tuple[list[bytes], list[bytes]]:
    """Deposits for `deposits` traders and a price, then trades between neighbours."""
    desk = Desk()
    keys = [trader(f"bench-{i}") for i in range(max(2, deposits))]
    setup = [encode_tx(desk.deposit(k, 1_000_000 * USD)) for k in keys]
    setup.append(encode_tx(desk.price(BTC, PRICE)))
    size = desk.config.markets.get(BTC).step_size * 10
    at = desk.tick()
    fills = []
    for i in range(trades):
        maker, taker = keys[i % len(keys)], keys[(i + 1) % len(keys)]
        buys = (i // len(keys)) % 2 == 0  # alternate so positions stay small
        resting = desk.order(maker, BTC, not buys, size, PRICE)
        incoming = desk.order(taker, BTC, buys, size, PRICE, tif=TimeInForce.IOC)
        fills.append(encode_tx(Trade(at, resting, incoming, size, PRICE)))
    return setup, fills


async def _drive(
    address: str, setup: list[bytes], fills: list[bytes], concurrency: int
) -> dict[str, float]:
    async with open_channel(address) as channel:
        deadline = time.monotonic() + 30
        while not await is_serving(channel):
            if time.monotonic() > deadline:
                raise RuntimeError("the sequencer did not become ready")
            await asyncio.sleep(0.05)
        stub = pb_grpc.SequencerStub(channel)  # type: ignore[no-untyped-call]

        async def send(raw: bytes, latencies: list[float]) -> None:
            started = time.perf_counter()
            await stub.SubmitTx(pb.SubmitTxRequest(tx=raw), timeout=30)
            latencies.append(time.perf_counter() - started)

        setup_latencies: list[float] = []
        started = time.perf_counter()
        for raw in setup:
            await send(raw, setup_latencies)
        setup_s = time.perf_counter() - started

        queue = iter(fills)
        latencies: list[float] = []

        async def client() -> None:
            for raw in queue:
                await send(raw, latencies)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        trades_s = time.perf_counter() - started
    setup_latencies.sort()
    latencies.sort()
    return {
        "deposits_per_s": len(setup) / setup_s,
        "deposit_ack_p50_ms": percentile(setup_latencies, 0.5) * 1000,
        "trades_per_s": len(fills) / trades_s,
        "trade_ack_p50_ms": percentile(latencies, 0.5) * 1000,
        "trade_ack_p99_ms": percentile(latencies, 0.99) * 1000,
    }


def run(
    deposits: int = 200, trades: int = 2_000, concurrency: int = 16, group_max_txs: int = 256
) -> dict[str, object]:
    """Start a sequencer, drive it, stop it; the figures and the machine, JSON-ready."""
    setup, fills = workload(deposits, trades)
    with tempfile.TemporaryDirectory(prefix="perpnet-seq-bench-") as scratch, ExitStack() as stack:
        folder = Path(scratch)
        redis_url = "redis://127.0.0.1:1/0"  # unreachable: the publisher retries, acks do not wait
        if shutil.which("redis-server"):
            redis = stack.enter_context(start_redis(folder / "redis"))
            redis_url = redis.url
        port = free_port()
        env = {
            **os.environ,
            "PERPNET_SEQUENCER_GRPC_PORT": str(port),
            "PERPNET_SEQUENCER_METRICS_PORT": "0",
            "PERPNET_SEQUENCER_DATABASE_URL": f"sqlite:///{folder / 'sequencer.db'}",
            "PERPNET_SEQUENCER_REDIS_URL": redis_url,
            "PERPNET_SEQUENCER_GROUP_MAX_TXS": str(group_max_txs),
            "PERPNET_SEQUENCER_LOG_LEVEL": "WARNING",
            "PERPNET_ORACLE_SIGNERS": ",".join("0x" + k.address.hex() for k in ORACLE_KEYS),
            "PERPNET_ORACLE_QUORUM": "2",
        }
        argv = [sys.executable, "-m", "perpnet.sequencer"]
        process = stack.enter_context(spawn("sequencer", argv, folder / "sequencer.log", env=env))
        wait_for_port(process, "127.0.0.1", port, timeout=30)
        figures = asyncio.run(_drive(f"127.0.0.1:{port}", setup, fills, concurrency))
    return {
        "benchmark": "sequencer",
        "deposits": len(setup),
        "trades": trades,
        "concurrency": concurrency,
        "group_max_txs": group_max_txs,
        **{k: round(v, 3) for k, v in figures.items()},
        "machine": machine(),
    }


if __name__ == "__main__":
    names = ("trades", "concurrency", "group_max_txs")
    options = dict(zip(names, map(int, sys.argv[1:]), strict=False))
    print(json.dumps(run(**options), indent=2))
