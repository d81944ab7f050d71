"""`perpnet bench e2e`: the whole testnet on this machine, driven through the gateway.

It starts its own devnet (`perpnet.devnet.supervisor.up`) in a temporary folder on free
loopback ports (constant oracle prices from a replay file, so no liquidation muddies the
figures), funds `2 × clients` traders on L1 (faucet, deposit, credited through the bridge),
signs every order before the clock starts (signing is the traders' work, not the
exchange's), then runs `clients` closed-loop HTTP clients against POST /v1/orders for
`duration_s`: each client alternates a resting limit and an IOC that takes it, sides
swapping every round, so about half the orders trade. With `batch` > 1 each client posts
its orders `batch` at a time to POST /v1/orders/batch (matched in the order given), and
every order of a batch counts on its own, its latency that of its request. With `rate`
the load is open-loop instead: the clients send on a fixed schedule that offers `rate`
orders/s in all, and each latency runs from the scheduled send, not the actual one, so
time spent queued behind a slow answer counts (no coordinated omission, as in wrk2); a
request sent more than one interval behind its schedule counts as late. Every request due
inside the window is sent, after the window if need be (up to OPEN_LOOP_DRAIN_S past it;
any left then counts as unsent), so the worst latencies are not dropped. Meanwhile it
samples the prover backlog (batches cut but not yet verified on L1) every second and makes
withdrawals one after another, each claimed on L1 as soon as it is claimable. After the
window it waits (bounded) for L1 to catch up with what was cut, and always takes the
devnet down.

Figures (JSON): accepted orders/s and trades/s, order-ack latency p50/p99 (client side:
HTTP request to acknowledgement, fills committed), proof cadence (seconds per batch
verified on L1 during the window), withdrawal latency (request to claimable, request to
claimed on L1), prover backlog (max, at the end of the window, drain time), and where the
time goes: CPU seconds per process in the window and the services' own latency means.
Bounded in time (`duration_s` ≤ 600) and count (`max_orders`); loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perpnet.bench.report import machine, percentile, process_cpu_seconds

Progress = Callable[[str], None]
PRICE = 60_000 * 10**6  # BTC-USD, constant
ORDER_SIZE = 10**7  # 0.001 BTC
DEPOSIT = 1_000_000 * 10**6
WITHDRAWAL = 10 * 10**6
GOAL = {"orders_per_s": 2_000, "p99_ack_ms": 50.0}
MAX_DURATION_S = 600.0
MAX_RATE = 20_000.0
OPEN_LOOP_DRAIN_S = 30.0
DRAIN_WAIT_S = 120.0
BENCH_ENV = {
    "PERPNET_ORACLE_NOISE_PPM": "0",
    "PERPNET_ORACLE_OUTAGE_PROB": "0",
    "PERPNET_ORACLE_OUTLIER_PROB": "0",
    "PERPNET_LOG_LEVEL": "WARNING",
}


@dataclass
class _Stats:
    latencies: list[float] = field(default_factory=list)
    fills: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    late: int = 0  # open-loop requests sent more than one interval behind their schedule
    unsent: int = 0  # open-loop requests due in the window, still unsent at the hard stop


def run(
    duration_s: float = 20.0,
    clients: int = 8,
    *,
    provers: int = 1,
    max_orders: int = 100_000,
    withdrawals: int = 3,
    batch: int = 1,
    rate: float | None = None,
    directory: Path | None = None,
    progress: Progress = lambda _: None,
) -> dict[str, Any]:
    """Start a devnet, load it for `duration_s` with `clients` clients, stop it; the figures.

    `rate` (orders/s offered, all clients together) makes the load open-loop; None runs
    each client as fast as its answers come back."""
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration_s must be in (0, {MAX_DURATION_S:g}]")
    if rate is not None and not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be in (0, {MAX_RATE:g}] orders/s")
    if rate is not None and rate * duration_s > max_orders:
        raise ValueError(
            f"rate × duration_s is {rate * duration_s:,.0f} orders, past max_orders {max_orders:,}"
        )
    if not 1 <= clients <= 256:
        raise ValueError("clients must be in [1, 256]")
    if batch > 1:
        from perpnet.gateway.schemas import MAX_BATCH_ORDERS

        if batch > MAX_BATCH_ORDERS:
            raise ValueError(f"batch must be in [1, {MAX_BATCH_ORDERS}]")
    elif batch < 1:
        raise ValueError("batch must be at least 1")
    with _devnet(directory, provers, progress) as plan:
        return _measure(
            plan, duration_s, clients, provers, max_orders, withdrawals, batch, rate, progress
        )


@contextlib.contextmanager
def _devnet(directory: Path | None, provers: int, progress: Progress) -> Iterator[Any]:
    from perpnet.devnet.plan import Plan
    from perpnet.devnet.supervisor import down, up

    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perpnet-")))
        directory.mkdir(parents=True, exist_ok=True)
        prices = directory / "prices.csv"
        prices.write_text(
            f"0,BTC-USD,{PRICE}\n0,ETH-USD,{3_000 * 10**6}\n0,SOL-USD,{150 * 10**6}\n"
        )
        env = {**BENCH_ENV, "PERPNET_ORACLE_REPLAY_CSV": str(prices.resolve())}
        plan = Plan.on_free_ports(directory, provers=provers, extra_env=env)
        progress("starting the devnet")
        up(plan, lambda step: progress(f"starting {step}"), health_timeout_s=120.0)
        try:
            yield plan
        finally:
            progress("stopping the devnet")
            down(plan, lambda _: None, grace_s=10.0)


def _measure(
    plan: Any,
    duration_s: float,
    clients: int,
    provers: int,
    max_orders: int,
    withdrawals: int,
    batch: int,
    rate: float | None,
    progress: Progress,
) -> dict[str, Any]:
    from perpnet.client.sdk import Client, L1Wallet
    from perpnet.core.crypto import PrivateKey
    from perpnet.core.orders import TimeInForce
    from perpnet.devnet.supervisor import load
    from perpnet.l1.anvil import rpc

    gateway = f"http://127.0.0.1:{plan.gateway_port}"
    keys = [PrivateKey.from_seed(f"bench-e2e-{i}".encode()) for i in range(2 * clients + 1)]
    progress(f"funding {len(keys)} traders on L1")

    def fund(key: PrivateKey) -> L1Wallet:  # faucet, approve, deposit: one block each
        rpc(plan.rpc_url, "anvil_setBalance", ["0x" + key.address.hex(), hex(10**21)])
        wallet = L1Wallet.connect(plan.rpc_url, plan.deployment, key)
        wallet.faucet(DEPOSIT)
        wallet.deposit(DEPOSIT)
        return wallet

    with ThreadPoolExecutor(max_workers=16) as pool:  # traders' keys: independent nonces
        wallets = list(pool.map(fund, keys))
    traders = [Client(gateway, key, timeout=30.0) for key in keys]
    _wait("deposits credited", lambda: all(_collateral(t) == DEPOSIT for t in traders), 120)

    # sign before the clock starts: per client, rounds of (resting limit, IOC taking it)
    # enough for the offered (else the goal's) rate over the window (+20 %), within max_orders
    wanted = int((rate or GOAL["orders_per_s"]) * duration_s * 1.2) // clients
    per_client = max(2, min(max_orders // clients, wanted))
    progress(f"signing {per_client * clients} orders")
    signing = time.monotonic()
    bodies: list[list[dict[str, Any]]] = []
    nonce = time.time_ns()
    for c in range(clients):
        p, q = traders[2 * c], traders[2 * c + 1]
        mine = []
        for i in range(per_client):
            round_, taker = divmod(i, 2)
            seller, buyer = (p, q) if round_ % 2 == 0 else (q, p)
            nonce += 1
            if taker:
                signed = buyer.sign_order(
                    0, True, ORDER_SIZE, PRICE, tif=TimeInForce.IOC, nonce=nonce
                )
            else:
                signed = seller.sign_order(0, False, ORDER_SIZE, PRICE, nonce=nonce)
            mine.append(Client.order_body(signed))
        bodies.append(mine)
    signing_s = time.monotonic() - signing

    sampler = _Sampler(plan)
    processes = load(plan)
    cpu_before = _cpu_seconds(processes)
    _BENCH_CPU[0] = time.process_time()
    server_before = _server_metrics(plan)
    saver = _Withdrawals(traders[-1], wallets[-1], withdrawals, duration_s)
    progress(f"load: {clients} clients for {duration_s:g} s")
    sampler.start()
    started = time.monotonic()
    saver.start()
    stats = asyncio.run(_load(gateway, bodies, started + duration_s, batch, rate))
    elapsed = time.monotonic() - started
    cpu_after = _cpu_seconds(processes)
    server_after = _server_metrics(plan)
    backlog_end = sampler.latest()
    verified_in_window = sampler.verified_since(started)
    progress("waiting for L1 to catch up and for the withdrawals")
    drain_s = sampler.drain(DRAIN_WAIT_S)
    sampler.stop()
    saver.join(DRAIN_WAIT_S + 60)

    accepted = len(stats.latencies)
    lat = sorted(stats.latencies)
    orders_per_s = accepted / elapsed
    p99_ms = percentile(lat, 0.99) * 1000
    cadence = (elapsed / verified_in_window) if verified_in_window else None
    return {
        "benchmark": "e2e",
        "parameters": {
            "duration_s": duration_s,
            "clients": clients,
            "batch": batch,
            "rate_orders_per_s": rate,
            "load": "closed-loop" if rate is None else "open-loop, latency from the scheduled send",
            "traders": 2 * clients,
            "provers": provers,
            "orders_signed": per_client * clients,
            "signing_s": round(signing_s, 1),
            "order": "BTC-USD 0.001 at 60,000: a resting limit, then an IOC that takes it",
            "devnet": "every service as a local process, SQLite, redis-server, anvil (1 s blocks)",
        },
        "figures": {
            "elapsed_s": round(elapsed, 3),
            "orders_accepted": accepted,
            "orders_per_s": round(orders_per_s, 1),
            "trades_per_s": round(stats.fills / elapsed, 1),
            "refused": dict(stats.refused),
            "errors": dict(stats.errors),
            "requests_sent_late": stats.late,
            "requests_unsent": stats.unsent,
            "ack_ms": {
                "p50": round(percentile(lat, 0.50) * 1000, 2),
                "p90": round(percentile(lat, 0.90) * 1000, 2),
                "p99": round(p99_ms, 2),
                "max": round(lat[-1] * 1000, 2) if lat else None,
            },
            "proof_cadence_s": round(cadence, 2) if cadence else None,
            "batches_verified_in_window": verified_in_window,
            "prover_backlog_batches": {
                "max": sampler.max_backlog(),
                "at_window_end": backlog_end,
                "drain_s": None if drain_s is None else round(drain_s, 1),
                "samples": sampler.series(),
            },
            "withdrawal_latency_s": saver.report(),
        },
        "goal": {
            **GOAL,
            "met": orders_per_s >= GOAL["orders_per_s"] and p99_ms <= GOAL["p99_ack_ms"],
            "orders_per_s_shortfall": round(max(0.0, GOAL["orders_per_s"] - orders_per_s), 1),
        },
        "where_the_time_goes": {
            "cpu_s_in_window": _cpu_spent(cpu_before, cpu_after),
            "cpu_s_available": round(elapsed * (os.cpu_count() or 1), 1),
            "service_means": _means(server_before, server_after),
            "gc_pause_ms_in_window": _gc_pauses(server_before, server_after),
            "event_loop_lag": _loop_lag(server_before, server_after),
        },
        "machine": machine(),
    }


def _wait(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _collateral(client: Any) -> int:
    return int(client.account()["collateral"])


class _Connection:
    """One bare HTTP/1.1 keep-alive connection to the gateway.

    The load generator shares the 2 cores with the system it measures, so it
    must cost far less per request than the gateway: httpx costs about 5 ms of
    CPU per request here, this a few tens of µs (requests are encoded before the
    clock starts; replies are read by Content-Length or chunks).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, payload: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        try:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            status = int((await reader.readline()).split()[1])
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                body = b""
                while size := int((await reader.readline()).strip(), 16):
                    body += (await reader.readexactly(size + 2))[:-2]
                await reader.readline()
            else:
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
            if headers.get(b"connection", b"").lower() == b"close":
                self.close()
            return status, body
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            self.close()
            raise ConnectionError(f"POST {path}: connection broken") from None

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def _load(
    gateway: str,
    bodies: list[list[dict[str, Any]]],
    deadline: float,
    batch: int,
    rate: float | None = None,
) -> _Stats:
    import json
    from urllib.parse import urlsplit

    address = urlsplit(gateway)
    path = "/v1/orders" if batch == 1 else "/v1/orders/batch"
    payloads = [
        [
            json.dumps(mine[i] if batch == 1 else {"orders": mine[i : i + batch]}).encode()
            for i in range(0, len(mine), batch)
        ]
        for mine in bodies
    ]
    stats = _Stats()

    def count(status: int, answer: dict[str, Any], took: float) -> None:
        """One order's answer: its ack (200) or its error body."""
        if status == 200:
            stats.latencies.append(took)
            stats.fills += len(answer["fills"])
        else:
            try:
                code = str(answer["error"]["code"])
            except Exception:
                code = f"HTTP {status}"
            stats.refused[code] += 1

    # open loop: client c sends request k at start + (c / clients + k) * interval. Every
    # request due inside the window is sent, the late ones after it too (their latency
    # runs from when they were due) until OPEN_LOOP_DRAIN_S past it; any still unsent
    # then is counted, not dropped: the worst latencies are the ones that would vanish.
    interval = len(payloads) * batch / rate if rate else 0.0
    start = time.perf_counter()
    end = start + (deadline - time.monotonic())  # the window's end on the schedule's clock
    hard_stop = end + OPEN_LOOP_DRAIN_S

    async def client(c: int, mine: list[bytes]) -> None:
        http = _Connection(address.hostname or "127.0.0.1", address.port or 80)
        try:
            for k, payload in enumerate(mine):
                sent = time.perf_counter()
                if interval:
                    due = start + (c / len(payloads) + k) * interval
                    if due >= end:
                        return
                    if sent >= hard_stop:
                        stats.unsent += 1
                        continue
                    if due > sent:
                        await asyncio.sleep(due - sent)
                    elif sent - due > interval:
                        stats.late += 1
                    sent = due
                elif time.monotonic() >= deadline:
                    return
                try:
                    status, body = await asyncio.wait_for(http.post(path, payload), 30.0)
                except (ConnectionError, TimeoutError) as exc:
                    http.close()
                    stats.errors[type(exc).__name__] += 1
                    continue
                took = time.perf_counter() - sent
                try:
                    answer = json.loads(body)
                except ValueError:
                    answer = {}
                if batch == 1 or status != 200:
                    count(status, answer, took)
                else:
                    for result in answer["results"]:
                        count(result["status"], result.get("ack") or result, took)
        finally:
            http.close()

    await asyncio.gather(*(client(c, mine) for c, mine in enumerate(payloads)))
    return stats


class _Sampler(threading.Thread):
    """Every second: batches cut (sequencer) and verified (L1); the backlog is the difference."""

    def __init__(self, plan: Any) -> None:
        super().__init__(name="backlog-sampler", daemon=True)
        import grpc
        from web3 import Web3

        from perpnet.l1.anvil import DEV_KEY
        from perpnet.l1.client import Sender
        from perpnet.l1.deploy import Deployment
        from perpnet.proto.v1 import sequencer_pb2_grpc

        self._channel = grpc.insecure_channel(f"127.0.0.1:{plan.grpc_ports['sequencer']}")
        self._stub = sequencer_pb2_grpc.SequencerStub(self._channel)  # type: ignore[no-untyped-call]
        w3 = Web3(Web3.HTTPProvider(plan.rpc_url))
        sender = Sender(w3, key=bytes.fromhex(DEV_KEY[2:]))
        self._rollup = Deployment.load(plan.deployment).client(w3, sender)
        self._halt = threading.Event()
        self._samples: list[tuple[float, int, int]] = []  # (t, cut, verified)
        self._lock = threading.Lock()

    def _sample(self) -> tuple[float, int, int]:
        from perpnet.proto.v1 import sequencer_pb2

        cut = self._stub.GetState(sequencer_pb2.GetStateRequest(), timeout=10).next_batch_id
        verified = self._rollup.next_batch_id()
        sample = (time.monotonic(), int(cut), int(verified))
        with self._lock:
            self._samples.append(sample)
        return sample

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(Exception):
                self._sample()
            self._halt.wait(1.0)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        self._channel.close()

    def latest(self) -> int | None:
        with contextlib.suppress(Exception):
            _, cut, verified = self._sample()
            return cut - verified
        return None

    def verified_since(self, started: float) -> int:
        with self._lock:
            inside = [s for s in self._samples if s[0] >= started]
        return inside[-1][2] - inside[0][2] if len(inside) > 1 else 0

    def max_backlog(self) -> int | None:
        with self._lock:
            return max((c - v for _, c, v in self._samples), default=None)

    def series(self) -> list[int]:
        with self._lock:
            return [c - v for _, c, v in self._samples]

    def drain(self, timeout_s: float) -> float | None:
        """Seconds until L1 verified every batch cut when the window closed (None: not in time)."""
        started = time.monotonic()
        target = None
        while time.monotonic() - started < timeout_s:
            with contextlib.suppress(Exception):
                _, cut, verified = self._sample()
                target = cut if target is None else target
                if verified >= target:
                    return time.monotonic() - started
            time.sleep(0.5)
        return None


class _Withdrawals(threading.Thread):
    """Withdrawals one after another during the window; each claimed on L1 once claimable."""

    def __init__(self, client: Any, wallet: Any, count: int, window_s: float) -> None:
        super().__init__(name="withdrawals", daemon=True)
        self.client, self.wallet, self.count, self.window_s = client, wallet, count, window_s
        self.claimable_s: list[float] = []
        self.claimed_s: list[float] = []
        self.failures: Counter[str] = Counter()
        self.last_failure: dict[str, str] = {}

    def run(self) -> None:
        started = time.monotonic()
        for _ in range(self.count):
            if time.monotonic() - started > self.window_s:
                break
            try:
                sent = time.monotonic()
                self.client.withdraw(WITHDRAWAL)  # the account's nonce, read now: after a
                # refusal or a timeout the probe cannot judge, it is whatever the log says
                _wait("claimable", lambda: self.wallet.claimable() >= WITHDRAWAL, DRAIN_WAIT_S)
                self.claimable_s.append(time.monotonic() - sent)
                self.wallet.claim()
                self.claimed_s.append(time.monotonic() - sent)
            except Exception as exc:  # with its code and message: a refusal is a finding
                kind = type(exc).__name__
                code = getattr(exc, "code", None)
                key = f"{kind} {getattr(exc, 'status', '')} {code}".strip() if code else kind
                self.failures[key] += 1
                self.last_failure[key] = str(exc)[:300]

    def report(self) -> dict[str, Any]:
        def summary(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {"median": round(statistics.median(values), 2), "max": round(max(values), 2)}

        return {
            "count": len(self.claimed_s),
            "to_claimable": summary(self.claimable_s),
            "to_claimed_on_l1": summary(self.claimed_s),
            "failures": dict(self.failures),
            "last_failure": dict(self.last_failure),
        }


def _cpu_spent(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float]:
    out = {}
    for name, start in before.items():
        end = after.get(name)
        if start is not None and end is not None:
            out[name] = round(end - start, 2)
    out["bench (load generator)"] = round(time.process_time() - _BENCH_CPU[0], 2)
    return out


_BENCH_CPU = [0.0]


def _cpu_seconds(processes: Iterable[Any]) -> dict[str, float | None]:
    """By name (`.name`, `.pid`): what `process_cpu_seconds` reads."""
    processes = list(processes)
    seconds = process_cpu_seconds(p.pid for p in processes)
    return {p.name: seconds[p.pid] for p in processes}


Series = tuple[str, str, str, str]  # process, histogram, label name, label value ("" for all)
_MEANS: dict[Series, tuple[str, float]] = {  # -> (label for the report, unit per second)
    ("matcher", "perpnet_matcher_order_ack_seconds", "", ""): ("matcher order ack", 1000),
    ("matcher", "perpnet_matcher_matching_seconds", "", ""): ("matching engine", 1000),
    ("matcher", "perpnet_matcher_batch_orders", "", ""): ("matcher micro-batch, orders", 1),
    ("matcher", "perpnet_matcher_batch_stage_seconds", "stage", "submit"): (
        "matcher micro-batch SubmitTxs",
        1000,
    ),
    ("matcher", "perpnet_matcher_batch_stage_seconds", "stage", "write"): (
        "matcher micro-batch row write",
        1000,
    ),
    ("matcher", "perpnet_matcher_margin_check_seconds", "", ""): ("pre-trade margin check", 1000),
    ("sequencer", "perpnet_sequencer_apply_seconds", "", ""): ("sequencer apply", 1000),
    ("sequencer", "perpnet_sequencer_commit_seconds", "", ""): (
        "sequencer commit (fsync group)",
        1000,
    ),
    ("sequencer", "grpc_server_handling_seconds", "grpc_method", "SubmitTx"): (
        "sequencer SubmitTx handling",
        1000,
    ),
    ("sequencer", "grpc_server_handling_seconds", "grpc_method", "SubmitTxs"): (
        "sequencer SubmitTxs handling",
        1000,
    ),
    ("sequencer", "perpnet_sequencer_batch_txs", "", ""): ("batch size, txs", 1),
    ("prover-0", "perpnet_prover_trace_rows_used", "", ""): ("prover rows used per batch", 1),
    ("prover-0", "perpnet_prover_trace_rows", "", ""): ("prover trace rows per batch", 1),
}
_PROCESSES = ("gateway", "matcher", "sequencer", "margin", "oracle", "bridge", "prover-0")
_GC_PAUSES: dict[Series, str] = {
    (process, "perpnet_gc_pause_seconds", "", ""): process for process in _PROCESSES
}
"""Time each process stood still in garbage collection: the whole process, event loop included."""
_LAG = "perpnet_event_loop_lag_seconds"
_LAG_LATE_S = "0.025"
_LOOP_LAG: dict[Series, str] = {
    **{(process, _LAG, "", ""): process for process in _PROCESSES},
    **{(process, _LAG, "le", _LAG_LATE_S): process for process in _PROCESSES},
}
"""How late each process's event loop woke: all samples, and those within 25 ms."""


def _server_metrics(plan: Any) -> dict[Series, tuple[float, float]]:
    """(sum, count) of each series in _MEANS, _GC_PAUSES and _LOOP_LAG, summed over its other
    labels; a series of one bucket (label "le") counts the samples at most that bound."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[Series, tuple[float, float]] = {}
    series = (*_MEANS, *_GC_PAUSES, *_LOOP_LAG)
    for process in {key[0] for key in series}:
        service = process.partition("-")[0]  # prover-0 is a prover
        port = plan.process_env(process, service)[f"PERPNET_{service.upper()}_METRICS_PORT"]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            for key in series:
                _, name, label, value = key
                if key[0] != process or name != family.name:
                    continue
                samples = [s for s in family.samples if not label or s.labels.get(label) == value]
                total = sum(s.value for s in samples if s.name.endswith("_sum"))
                counted = "_bucket" if label == "le" else "_count"
                count = sum(s.value for s in samples if s.name.endswith(counted))
                out[key] = (total, count)
    return out


def _means(
    before: dict[Series, tuple[float, float]], after: dict[Series, tuple[float, float]]
) -> dict[str, float]:
    """Each _MEANS series' mean over the window. A series the first scrape lacks had no
    sample yet (a labelled histogram appears on its first) if its process answered that
    scrape; if the process did not, its mean is left out rather than taken over its life."""
    scraped = {key[0] for key in before}  # every process exposes its pause and lag series
    out = {}
    for key, (label, unit) in _MEANS.items():
        if key not in after or key[0] not in scraped:
            continue
        s0, c0 = before.get(key, (0.0, 0.0))
        s1, c1 = after[key]
        if c1 > c0:
            out[label] = round((s1 - s0) / (c1 - c0) * unit, 3)
    return out


def _window(
    before: dict[Series, tuple[float, float]], after: dict[Series, tuple[float, float]], key: Series
) -> tuple[float, float] | None:
    """(sum, count) of `key` over the window; None unless both scrapes have it (a failed
    first scrape would otherwise give the process's lifetime as the window)."""
    if key not in before or key not in after:
        return None
    return after[key][0] - before[key][0], after[key][1] - before[key][1]


def _gc_pauses(
    before: dict[Series, tuple[float, float]], after: dict[Series, tuple[float, float]]
) -> dict[str, float]:
    out = {}
    for key, process in _GC_PAUSES.items():
        window = _window(before, after, key)
        if window is not None:
            out[process] = round(window[0] * 1000, 1)
    return out


def _loop_lag(
    before: dict[Series, tuple[float, float]], after: dict[Series, tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """Per process: the mean lag of its event loop and how many 50 ms samples woke over 25 ms
    late (each a stall that every request in flight sat through)."""

    out = {}
    for process in _PROCESSES:
        every = _window(before, after, (process, _LAG, "", ""))
        late = _window(before, after, (process, _LAG, "le", _LAG_LATE_S))
        if every is None or late is None:
            continue  # a scrape failed, or the bucket is gone: no figure rather than a wrong one
        (total, samples), on_time = every, late[1]
        if samples > 0:
            out[process] = {
                "mean_ms": round(total / samples * 1000, 2),
                "samples": int(samples),
                "over_25ms": int(samples - on_time),
            }
    return out


if __name__ == "__main__":  # the lead wires `perpnet bench e2e`; this runs it meanwhile
    import json
    import sys

    print(json.dumps(run(progress=lambda m: print(m, file=sys.stderr)), indent=2))
