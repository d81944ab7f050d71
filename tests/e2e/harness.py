"""The end-to-end harness: one real devnet (every service a local process) and what tests read.

`running_devnet` starts `perpnet.devnet.supervisor.up` on free loopback ports in a
temp folder with short timings and always takes it down again. Only one devnet
runs at a time on a machine (a file lock), so pytest-xdist workers and other
test runs queue for it instead of fighting over two cores.

Everything a test checks comes from the outside: the gateway (SDK `Client`),
L1 (`L1Wallet`, the rollup contract), the sequencer's durable log over gRPC
(`GetTxs`, `GetBatch`) and the services' /metrics. `replay` re-applies that log
to a fresh core `ExchangeState`, re-cutting at the recorded batch boundaries,
and checks every recorded root and public input: the state the tests reason
about is one they rebuilt themselves.
"""

from __future__ import annotations

import contextlib
import fcntl
import signal
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
from prometheus_client.parser import text_string_to_metric_families
from web3 import Web3

from perpnet.client.sdk import Client, L1Wallet
from perpnet.core.accounts import Account
from perpnet.core.batch import BatchBuilder
from perpnet.core.crypto import PrivateKey
from perpnet.core.encoding import decode_tx
from perpnet.core.margin import pending_funding, risk
from perpnet.core.markets import USD
from perpnet.core.state import ExchangeConfig, ExchangeState
from perpnet.core.txs import Tx
from perpnet.devnet.plan import Plan
from perpnet.devnet.supervisor import DevnetError, down, kill, load, restart, up
from perpnet.l1.anvil import DEV_KEY, rpc
from perpnet.l1.client import RollupClient, Sender
from perpnet.l1.deploy import Deployment
from perpnet.proto.v1 import sequencer_pb2, sequencer_pb2_grpc
from perpnet.runtime.follower import ExchangeSettings

T = TypeVar("T")
LOCK = Path(tempfile.gettempdir()) / "perpnet-e2e-devnet.lock"
LOCK_WAIT_S = 900.0
START_PRICES = {"BTC-USD": 60_000 * USD, "ETH-USD": 3_000 * USD, "SOL-USD": 150 * USD}
BTC = 0
ONE_BTC = 10**10  # size quantums (atomic resolution 10)

# Short timings: funding every 3 s (clamped per 60 s period), oracle ticks every second
# from a price file with no noise, outages or outliers (prices move only when a test says).
FAST_ENV = {
    "PERPNET_ORACLE_NOISE_PPM": "0",
    "PERPNET_ORACLE_OUTAGE_PROB": "0",
    "PERPNET_ORACLE_OUTLIER_PROB": "0",
    "PERPNET_ORACLE_TICK_INTERVAL_S": "1",
    "PERPNET_MIN_FUNDING_INTERVAL_MS": "2000",
    "PERPNET_FUNDING_PERIOD_MS": "60000",
    "PERPNET_MARGIN_FUNDING_INTERVAL_S": "3",
    "PERPNET_MARGIN_FUNDING_SAMPLE_S": "0.5",
    "PERPNET_PROVER_RECLAIM_AFTER_S": "5",
    "PERPNET_BRIDGE_POLL_INTERVAL_S": "0.5",
}


class TimedOutError(AssertionError):
    """A condition the test waited for did not happen in time."""


def wait_for(
    what: str,
    check: Callable[[], T | None],
    timeout_s: float,
    every_s: float = 0.25,
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `check` until it returns something truthy; exceptions count as "not yet",
    except those in `fatal`, which end the wait at once."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except fatal:
            raise
        except Exception as exc:  # a service restarting, a read racing a write: retry
            last = exc
        if time.monotonic() > deadline:
            raise TimedOutError(
                f"timed out after {timeout_s:g} s waiting for {what} (last: {last!r})"
            )
        time.sleep(every_s)


@contextlib.contextmanager
def devnet_lock(timeout_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """One devnet at a time on this machine (xdist workers, concurrent runs)."""
    with LOCK.open("a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another devnet held {LOCK} for {timeout_s:g} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_prices(path: Path, prices: Mapping[str, int]) -> None:
    """The oracle's replay file: one constant price per market (`offset_ms,market,price`)."""
    rows = [f"0,{symbol},{price}" for symbol, price in sorted(prices.items())]
    path.write_text("offset_ms,market,price\n" + "\n".join(rows) + "\n")


@dataclass
class Devnet:
    plan: Plan
    prices_file: Path
    w3: Web3 = field(init=False)
    rollup: RollupClient = field(init=False)
    config: ExchangeConfig = field(init=False)
    traders: list[Trader] = field(default_factory=list)  # every trader a test made here

    def __post_init__(self) -> None:
        self.w3 = Web3(Web3.HTTPProvider(self.plan.rpc_url))
        deployment = Deployment.load(self.plan.deployment)
        self.rollup = deployment.client(self.w3, Sender(self.w3, key=bytes.fromhex(DEV_KEY[2:])))
        env = self.plan.environment()
        self.config = ExchangeSettings.from_env("sequencer", env).exchange_config()
        self._channel = grpc.insecure_channel(f"127.0.0.1:{self.plan.grpc_ports['sequencer']}")
        self.sequencer = sequencer_pb2_grpc.SequencerStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.plan.gateway_port}"

    # ------------------------------------------------------------------ traders

    def trader(self, seed: str, collateral: int = 0) -> Trader:
        """A funded key (ETH for gas on anvil), its wallet and its gateway client."""
        key = PrivateKey.from_seed(f"{self.plan.directory}/{seed}".encode())
        rpc(self.plan.rpc_url, "anvil_setBalance", ["0x" + key.address.hex(), hex(10**21)])
        wallet = L1Wallet(self.w3, Deployment.load(self.plan.deployment), key)
        trader = Trader(seed, key, wallet, Client(self.gateway_url, key, timeout=30.0))
        if collateral:
            wallet.faucet(collateral)
            trader.minted += collateral
        self.traders.append(trader)
        return trader

    def set_prices(self, prices: Mapping[str, int]) -> None:
        """Move the oracle: a new replay file, and the oracle restarted to read it."""
        write_prices(self.prices_file, prices)
        kill(self.plan, "oracle", signal.SIGTERM)
        restart(self.plan, "oracle")

    # ------------------------------------------------------------------ reads

    def state(self) -> sequencer_pb2.StateSummary:
        return self.sequencer.GetState(sequencer_pb2.GetStateRequest(), timeout=10)

    def log(self, upto_seq: int) -> list[sequencer_pb2.LoggedTx]:
        out: list[sequencer_pb2.LoggedTx] = []
        while not out or out[-1].seq < upto_seq:
            start = out[-1].seq + 1 if out else 1
            page = self.sequencer.GetTxs(
                sequencer_pb2.GetTxsRequest(from_seq=start, limit=5000), timeout=30
            ).txs
            if not page:
                break
            out += [t for t in page if t.seq <= upto_seq]
        return out

    def batch(self, batch_id: int) -> sequencer_pb2.BatchReply:
        return self.sequencer.GetBatch(sequencer_pb2.GetBatchRequest(batch_id=batch_id), timeout=10)

    def verified_batch(self) -> int:
        """The last batch L1 has verified (-1: none)."""
        return self.rollup.next_batch_id() - 1

    def rollup_balance(self) -> int:
        return self.rollup.balance(self.rollup.rollup.address)

    def replay(self, upto_seq: int | None = None) -> Replay:
        """The log re-applied from genesis to `upto_seq` (default: the state's last_seq)."""
        summary = self.state()
        last = summary.last_seq if upto_seq is None else upto_seq
        entries = self.log(last)
        assert [e.seq for e in entries] == list(range(1, last + 1)), "the log has gaps"
        builder = BatchBuilder(ExchangeState(self.config))
        txs: list[Tx] = []
        cut_batches = summary.next_batch_id
        batch = self.batch(0) if cut_batches else None
        roots: dict[int, bytes] = {}
        for entry in entries:
            tx = decode_tx(entry.tx, self.config.domain)
            result = builder.add(tx, authenticated=True)
            assert not isinstance(result, Exception), f"seq {entry.seq} refused on replay: {result}"
            txs.append(tx)
            while batch is not None and batch.last_seq == entry.seq:
                cut = builder.cut()
                assert cut.public_inputs.new_root == batch.new_root, f"batch {batch.batch_id} root"
                assert cut.public_inputs.encode() == batch.public_inputs, f"batch {batch.batch_id}"
                roots[batch.batch_id] = batch.new_root
                nxt = batch.batch_id + 1
                batch = self.batch(nxt) if nxt < cut_batches else None
        if upto_seq is None:
            assert builder.state.root() == summary.root, "the replayed root differs"
        return Replay(builder.state, txs, roots, last)

    def replay_batch(self, batch_id: int) -> Replay:
        """The state at the end of batch `batch_id` (what L1 has after verifying it)."""
        return self.replay(self.batch(batch_id).last_seq)

    # ------------------------------------------------------------------ metrics

    def metrics(self, process: str) -> dict[str, float]:
        """Every sample of a process, keyed `name{label=value,...}`."""
        service = process.split("-")[0]
        env = self.plan.process_env(process, service)
        port = env[f"PERPNET_{service.upper()}_METRICS_PORT"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out

    def metric(self, process: str, prefix: str) -> float:
        """The sum of a process's samples whose key starts with `prefix` (0 if none)."""
        return sum(v for k, v in self.metrics(process).items() if k.startswith(prefix))

    def log_tails(self, lines: int = 15) -> str:
        out = []
        for p in load(self.plan):
            try:
                tail = Path(p.log).read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {p.name} ({p.log})\n" + "\n".join(t[:400] for t in tail))
        return "\n".join(out)


@dataclass
class Trader:
    name: str
    key: PrivateKey
    wallet: L1Wallet
    client: Client
    minted: int = 0  # faucet tokens received
    deposited: int = 0
    claimed: int = 0

    @property
    def address(self) -> bytes:
        return self.key.address

    def deposit(self, amount: int) -> int:
        deposit_id = self.wallet.deposit(amount)
        self.deposited += amount
        return deposit_id

    def claim(self) -> int:
        paid = self.wallet.claim()
        self.claimed += paid
        return paid

    def collateral(self) -> int:
        return int(self.client.account()["collateral"])

    def size(self, market: int = BTC) -> int:
        for position in self.client.positions():
            if position["market_id"] == market:
                return int(position["size"])
        return 0


@dataclass
class Replay:
    state: ExchangeState
    txs: list[Tx]
    roots: dict[int, bytes]  # batch id -> new root, for every batch cut within the replay
    last_seq: int

    def accounts(self) -> list[Account]:
        return sorted(self.state.iter_accounts(), key=lambda a: a.account_id)

    def net_collateral(self, account: Account) -> int:
        """Collateral less pending funding: what funding has settled or owes, to the quantum."""
        state = self.state
        return account.collateral - pending_funding(account, state.funding_index, state.markets)

    def total_net_collateral(self) -> int:
        return sum(self.net_collateral(a) for a in self.accounts())

    def value(self, account: Account) -> int:
        """The account's value at the state's prices: what the escape hatch pays (floored at 0)."""
        state = self.state
        return risk(account, state.markets, state.prices, state.funding_index).value

    def account_of(self, owner: bytes) -> Account:
        return self.state.account_of(owner, 0)


def devnet_plan(
    directory: Path,
    *,
    provers: int = 1,
    grace_period_s: int | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Plan:
    prices = directory / "prices.csv"
    env = {**FAST_ENV, "PERPNET_ORACLE_REPLAY_CSV": str(prices.resolve()), **(extra_env or {})}
    return Plan.on_free_ports(directory, provers=provers, grace_period_s=grace_period_s,
                              extra_env=env)  # fmt: skip


@contextlib.contextmanager
def running_devnet(
    directory: Path,
    *,
    prices: Mapping[str, int] = START_PRICES,
    provers: int = 1,
    grace_period_s: int | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Devnet]:
    """A whole devnet for the block's duration; always down at the end (logs kept)."""
    directory.mkdir(parents=True, exist_ok=True)
    plan = devnet_plan(
        directory, provers=provers, grace_period_s=grace_period_s, extra_env=extra_env
    )
    write_prices(directory / "prices.csv", prices)
    steps: list[str] = []
    with devnet_lock():
        try:
            up(plan, steps.append, health_timeout_s=120.0)
        except DevnetError as exc:
            raise AssertionError(f"the devnet did not start ({steps[-3:]}): {exc}") from exc
        devnet = Devnet(plan, directory / "prices.csv")
        try:
            yield devnet
        except BaseException:
            print(devnet.log_tails())  # shown by pytest with the failure
            raise
        finally:
            devnet.close()
            down(plan, lambda _: None, grace_s=10.0)
