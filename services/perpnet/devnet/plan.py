"""What a devnet runs and how it is wired: ports, keys and one shared environment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from perpnet.core.crypto import PrivateKey
from perpnet.core.typed_data import ANVIL_CHAIN_ID
from perpnet.runtime.config import GRPC_PORTS, METRICS_PORTS

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
        for service, port in GRPC_PORTS.items():
            env[f"PERPNET_{service.upper()}_GRPC_PORT"] = str(port)
        for service, port in METRICS_PORTS.items():
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
            env["PERPNET_PROVER_METRICS_PORT"] = str(METRICS_PORTS["prover"] + 10 * index)
            env["PERPNET_PROVER_GRPC_PORT"] = str(GRPC_PORTS["prover"] + 10 * index)
        return env
