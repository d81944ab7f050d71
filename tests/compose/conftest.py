"""Fixtures for the tests against a running compose stack (scripts/compose-test.sh).

These tests drive the containers from outside, exactly as a user would: the
gateway, anvil and Prometheus on their published ports, the SDK and the
`perpnet` command as they are, and `docker-compose` to read the deployment
file, kill and restart containers. Their files are named `compose_*.py`, so the
default `pytest` run never collects them; scripts/compose-test.sh brings the
stack up and names them explicitly.

Environment (defaults: the published ports of docker-compose.yml and .env):
PERPNET_GATEWAY_URL, PERPNET_L1_RPC_URL, PERPNET_PROMETHEUS_URL, and
PERPNET_COMPOSE, the compose command line (say `docker-compose -p perpnet-ci`).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from perpnet.client.sdk import Client, L1Wallet, new_key, save_key
from perpnet.core.crypto import PrivateKey
from perpnet.core.markets import USD
from perpnet.l1.anvil import rpc

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compose: needs the compose stack (scripts/compose-test.sh)")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # the stack may be restarting: keep polling
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}: {last_error}")
        time.sleep(every)


@dataclass
class Trader:
    name: str
    key: PrivateKey
    key_file: Path
    client: Client
    wallet: L1Wallet


@dataclass
class Stack:
    """The running stack, seen from the host."""

    gateway_url: str
    rpc_url: str
    prometheus_url: str
    compose_cmd: list[str]
    workdir: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(timeout=10.0)

    # ---------------------------------------------------------------- docker-compose

    def compose(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [*self.compose_cmd, *args], capture_output=True, text=True, timeout=120
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{shlex.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    @staticmethod
    def docker(*args: str) -> str:
        done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"docker {shlex.join(args)} failed: {done.stderr}")
        return done.stdout.strip()

    def health(self, container: str) -> str:
        return self.docker("inspect", "-f", "{{.State.Health.Status}}", container)

    def wait_healthy(self, container: str, timeout: float = 120.0) -> None:
        wait_for(
            f"container {container[:12]} healthy",
            lambda: self.health(container) == "healthy",
            timeout,
        )

    def sql(self, query: str) -> list[str]:
        """Rows of a query on the stack's PostgreSQL (one column, text)."""
        out = self.compose(
            "exec", "-T", "postgres", "sh", "-c",
            f'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -At -c "{query}"',
        )  # fmt: skip
        return [line for line in out.splitlines() if line]

    # ---------------------------------------------------------------- HTTP

    def get(self, path: str, **params: Any) -> Any:
        reply = self.http.get(self.gateway_url + path, params=params)
        reply.raise_for_status()
        return reply.json()

    def ready(self) -> bool:
        try:
            return self.http.get(self.gateway_url + "/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def prometheus(self, path: str, **params: Any) -> Any:
        reply = self.http.get(self.prometheus_url + path, params=params)
        reply.raise_for_status()
        body = reply.json()
        assert body["status"] == "success", body
        return body["data"]

    def batches(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.get("/v1/batches", limit=limit))

    def verified_through(self, seq: int) -> bool:
        """Whether a batch holding log position `seq` (or later) is verified on L1."""
        return any(
            b["status"] == "verified" and int(b["last_seq"]) >= seq for b in self.batches(20)
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    command = shlex.split(os.environ.get("PERPNET_COMPOSE", "docker-compose"))
    found = Stack(
        gateway_url=os.environ.get("PERPNET_GATEWAY_URL", "http://127.0.0.1:8080"),
        rpc_url=os.environ.get("PERPNET_L1_RPC_URL", "http://127.0.0.1:8545"),
        prometheus_url=os.environ.get("PERPNET_PROMETHEUS_URL", "http://127.0.0.1:9090"),
        compose_cmd=command,
        workdir=tmp_path_factory.mktemp("compose"),
    )
    wait_for("the gateway to be ready", found.ready, 120)
    yield found
    found.http.close()


@pytest.fixture(scope="session")
def deployment(stack: Stack) -> Path:
    """The deployer's file, read from the shared volume (what `perpnet` on the host needs)."""
    text = stack.compose("exec", "-T", "gateway", "cat", "/shared/l1.json")
    path = stack.workdir / "l1.json"
    path.write_text(text)
    assert json.loads(text)["addresses"]["rollup"]
    return path


@pytest.fixture(scope="session")
def make_trader(stack: Stack, deployment: Path) -> Callable[[str, int], Trader]:
    """A new key with ETH for gas on L1 and `collateral` deposited to L2 (waits until credited)."""

    def make(name: str, collateral: int) -> Trader:
        key = new_key()
        key_file = stack.workdir / f"{name}.json"
        save_key(key, key_file)
        address = "0x" + key.address.hex()
        rpc(stack.rpc_url, "anvil_setBalance", [address, hex(10**20)])
        client = Client(stack.gateway_url, key)
        wallet = L1Wallet.connect(stack.rpc_url, deployment, key)
        if collateral:
            wallet.faucet(collateral)
            wallet.deposit(collateral)
            wait_for(
                f"{name}'s deposit credited on L2",
                lambda: int(client.balances()["collateral"]) == collateral,
                120,
            )
        return Trader(name, key, key_file, client, wallet)

    return make


@pytest.fixture(scope="session")
def trader_usd() -> int:
    return 10_000 * USD
