"""What a devnet runs and how it is wired: ports, keys and one shared environment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perpnet.core.crypto import PrivateKey
from perpnet.core.typed_data import ANVIL_CHAIN_ID
from perpnet.runtime.config import GRPC_PORTS, METRICS_PORTS
from perpnet.runtime.localproc import free_ports

# start order: the sequencer first (everyone submits to it), the gateway last
SERVICES = ("sequencer", "oracle", "margin", "matcher", "prover", "bridge", "gateway")
GATEWAY_PORT = 8080
ANVIL_PORT = 8545
REDIS_PORT = 6380  # not 6379: never collide with a system redis
ANVIL_BLOCK_TIME_S = 1
ORACLE_SIGNERS = 3


def oracle_keys(count: int = ORACLE_SIGNERS) -> tuple[PrivateKey, ...]:
    """Deterministic testnet oracle keys: anyone can reproduce (and so forge) them."""
    return tuple(PrivateKey.from_seed(f"devnet-oracle-{i}".encode()) for i in range(count))


@dataclass(frozen=True)
class Plan:
    """Everything `up` needs, derived from the devnet directory and a few knobs."""

    directory: Path
    provers: int = 2
    redis_port: int = REDIS_PORT
    anvil_port: int = ANVIL_PORT
    gateway_port: int = GATEWAY_PORT
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # gRPC and metrics ports by service; a worker's own entry ("prover-1") wins over
    # the prover's base + 10 per worker
    grpc_ports: Mapping[str, int] = field(default_factory=lambda: dict(GRPC_PORTS))
    metrics_ports: Mapping[str, int] = field(default_factory=lambda: dict(METRICS_PORTS))
    block_time_s: float = ANVIL_BLOCK_TIME_S  # anvil's --block-time
    grace_period_s: int | None = None  # the rollup's forced-request grace; None: 120 s

    @classmethod
    def on_free_ports(cls, directory: Path, provers: int = 1, **knobs: Any) -> Plan:
        """A plan whose every port was free a moment ago (tests beside other stacks)."""
        services = [*GRPC_PORTS, *(f"prover-{i}" for i in range(provers))]
        metered = [*METRICS_PORTS, *services]
        ports = iter(free_ports(len(services) + len(metered) + 3))  # all distinct
        grpc_ports = {name: next(ports) for name in services}
        metrics_ports = {name: next(ports) for name in metered}
        return cls(
            directory,
            provers=provers,
            redis_port=next(ports),
            anvil_port=next(ports),
            gateway_port=next(ports),
            grpc_ports=grpc_ports,
            metrics_ports=metrics_ports,
            **knobs,
        )

    @property
    def deployment(self) -> Path:
        return self.directory / "l1.json"

    @property
    def record(self) -> Path:
        return self.directory / "devnet.json"

    @property
    def env_file(self) -> Path:
        return self.directory / "devnet.env"

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.anvil_port}"

    def processes(self) -> list[tuple[str, str]]:
        """(process name, service) pairs; prover workers are numbered."""
        out: list[tuple[str, str]] = []
        for service in SERVICES:
            if service == "prover":
                out += [(f"prover-{i}", "prover") for i in range(self.provers)]
            else:
                out.append((service, service))
        return out

    def environment(self) -> dict[str, str]:
        """The PERPNET_* variables every service reads (the same names as in containers)."""
        keys = oracle_keys()
        env = {
            "PERPNET_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "PERPNET_DATABASE_URL": f"sqlite:///{(self.directory / 'perpnet.db').resolve()}",
            "PERPNET_L1_RPC_URL": self.rpc_url,
            "PERPNET_L1_DEPLOYMENT": str(self.deployment.resolve()),
            "PERPNET_ORACLE_SIGNERS": ",".join("0x" + k.address.hex() for k in keys),
            "PERPNET_ORACLE_KEYS": ",".join("0x" + k.secret.hex() for k in keys),
            "PERPNET_ORACLE_QUORUM": "2",
            "PERPNET_GATEWAY_HTTP_PORT": str(self.gateway_port),
            "PERPNET_CHAIN_ID": str(ANVIL_CHAIN_ID),
            "PERPNET_LOG_LEVEL": "INFO",
        }
        for service, port in self.grpc_ports.items():
            if "-" not in service:
                env[f"PERPNET_{service.upper()}_GRPC_PORT"] = str(port)
        for service, port in self.metrics_ports.items():
            if "-" not in service:
                env[f"PERPNET_{service.upper()}_METRICS_PORT"] = str(port)
        if self.deployment.exists():  # signatures are bound to the rollup contract's address
            rollup = json.loads(self.deployment.read_text())["addresses"]["rollup"]
            env["PERPNET_VERIFYING_CONTRACT"] = rollup
        env.update(self.extra_env)
        return env

    def process_env(self, name: str, service: str) -> dict[str, str]:
        """Per-process additions: prover workers need distinct names and metrics ports."""
        env = self.environment()
        if service == "prover":
            index = int(name.rsplit("-", 1)[1])
            env["PERPNET_PROVER_CONSUMER"] = name
            metrics_port = self.metrics_ports.get(name, self.metrics_ports["prover"] + 10 * index)
            grpc_port = self.grpc_ports.get(name, self.grpc_ports["prover"] + 10 * index)
            env["PERPNET_PROVER_METRICS_PORT"] = str(metrics_port)
            env["PERPNET_PROVER_GRPC_PORT"] = str(grpc_port)
        return env
