"""One command deploys the L1 side: compile, deploy token + verifier + rollup, write the file.

The rollup's verifier is one of two kinds (`Deployment.verifier_kind`):
- "stark" (the default): stark_batch_verifier.vy in front of the on-chain STARK verifier
  (its batch evaluator, FRI): update_state takes `stark_verifier.pack_batch_proof`'s
  bytes and every batch proof is checked on chain; nothing is registered;
- "facts": the fact registry; the bridge checks each proof in Python and registers its
  fact before update_state (cheaper gas; the registrar is trusted).

The file (default `.perpnet/l1.json`) holds the chain id, the addresses, the
ABIs and each contract's source hash, and is what every service reads to
reach L1. Deploying is idempotent: if the file names this chain, code is
present at every address and the source hashes equal the tree's, the file is
reused as it is; anything else (a fresh anvil, an edited contract) deploys anew.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from web3 import Web3

from perpnet.core.markets import DEFAULT_MARKETS, Market
from perpnet.core.state import ExchangeState
from perpnet.l1.client import RollupClient, Sender
from perpnet.l1.compile import DEFAULT_BUFFERS, Artifact, Buffers, compile_all
from perpnet.stark.params import DEFAULT_PARAMS, ProofParams

DEFAULT_PATH = Path(".perpnet/l1.json")
# Testnet defaults: seconds, not StarkEx's 7 days and 2 days, so drills finish.
TESTNET_GRACE_PERIOD_S = 120
TESTNET_RECLAIM_DELAY_S = 300
# (name in the file, compiled contract)
CONTRACTS = (("token", "collateral_token"), ("verifier", "fact_registry"), ("rollup", "rollup"))
VERIFIER_KINDS = ("facts", "stark")


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    rpc_url: str
    block: int  # where the watcher starts
    governance: str
    operator: str
    registrar: str
    grace_period: int
    deposit_reclaim_delay: int
    genesis_root: str
    addresses: dict[str, str]
    abis: dict[str, list[dict[str, Any]]]
    source_hashes: dict[str, str]
    verifier_kind: str = "facts"
    """"facts" or "stark" (see the module's docstring); files written before it are facts."""
    proof_params: dict[str, int] = field(default_factory=dict)
    """The STARK parameters the on-chain verifier accepts (stark only)."""
    buffers: dict[str, int] = field(default_factory=dict)
    """compile.Buffers: the longest statement and packed proof the contracts take (empty
    in files written before it: the defaults)."""

    def contracts(self) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        return {name: (self.addresses[name], self.abis[name]) for name in self.addresses}

    def client(self, w3: Web3, sender: Sender) -> RollupClient:
        return RollupClient(w3, self.contracts(), sender, verifier_kind=self.verifier_kind)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        return cls(**json.loads(path.read_text()))


def genesis(state: ExchangeState) -> tuple[bytes, bytes, bytes]:
    """(accounts root, orders root, globals) of a state: the rollup's starting point."""
    state.root()
    return state.account_tree.root(), state.order_tree.root(), state.globals_bytes()


def _market_params(markets: tuple[Market, ...]) -> list[tuple[int, int, int]]:
    return [(m.market_id, m.step_size, m.atomic_resolution) for m in markets]


def artifacts(verifier: str, buffers: Buffers = DEFAULT_BUFFERS) -> dict[str, Artifact]:
    """Each contract of a deployment with this kind of verifier, by its name in the file."""
    compiled = compile_all(buffers)
    out = {name: compiled[contract] for name, contract in CONTRACTS}
    if verifier == "stark":
        from perpnet.l1 import stark_verifier as sv  # the STARK stack: only when used

        out["verifier"] = sv.compile_stark(sv.BATCH_VERIFIER, buffers)
        out["stark_verifier"] = sv.compile_stark(sv.VERIFIER, buffers)
    return out


def _reusable(
    w3: Web3, path: Path, arts: dict[str, Artifact], verifier: str, params: dict[str, int]
) -> Deployment | None:
    if not path.exists():
        return None
    try:
        found = Deployment.load(path)
    except (ValueError, TypeError, KeyError):
        return None
    if found.chain_id != w3.eth.chain_id or found.verifier_kind != verifier:
        return None
    if found.proof_params != params:
        return None
    for name, artifact in arts.items():
        if found.source_hashes.get(name) != artifact.source_hash:
            return None
        address = found.addresses.get(name)
        if address is None or not w3.eth.get_code(Web3.to_checksum_address(address)):
            return None
    return found


def _deploy_verifier(
    deployer: Sender,
    artifacts: dict[str, Artifact],
    verifier: str,
    registrar: str,
    params: ProofParams,
    buffers: Buffers,
) -> dict[str, str]:
    """The rollup's verifier ("verifier") and, for stark, the STARK verifier behind it."""
    if verifier == "facts":
        art = artifacts["verifier"]
        return {"verifier": deployer.deploy(art.abi, art.bytecode, deployer.address, registrar)}
    from perpnet.l1 import stark_verifier as sv

    adapter, stark = sv.deploy_batch_verifier(deployer, params, buffers)
    return {"verifier": adapter, "stark_verifier": stark.address}


def deploy(
    w3: Web3,
    deployer: Sender,
    *,
    path: Path | None = DEFAULT_PATH,
    operator: str | None = None,
    registrar: str | None = None,
    grace_period: int = TESTNET_GRACE_PERIOD_S,
    deposit_reclaim_delay: int = TESTNET_RECLAIM_DELAY_S,
    markets: tuple[Market, ...] = DEFAULT_MARKETS,
    state: ExchangeState | None = None,
    rpc_url: str = "",
    force: bool = False,
    verifier: str = "stark",
    proof_params: ProofParams = DEFAULT_PARAMS,
    buffers: Buffers = DEFAULT_BUFFERS,
) -> Deployment:
    """Deploy (or reuse) the contracts; the deployer is governance, and by default operator
    and fact registrar too. `state` is the L2 genesis (a fresh ExchangeState by default).
    `verifier` is "facts" or "stark"; the stark verifier accepts `proof_params` only;
    `buffers` are the longest statement and proof the contracts take."""
    if verifier not in VERIFIER_KINDS:
        raise ValueError(f"verifier must be one of {VERIFIER_KINDS}, not {verifier!r}")
    if verifier == "stark":
        from perpnet.l1 import stark_verifier as sv

        if not sv.evaluator_supports(markets):
            raise ValueError(
                "the on-chain batch evaluator was generated for other markets "
                "(regenerate with `python -m perpnet.l1.air_codegen`)"
            )
    arts = artifacts(verifier, buffers)
    params = asdict(proof_params) if verifier == "stark" else {}
    if path is not None and not force:
        found = _reusable(w3, path, arts, verifier, params)
        if found is not None:
            return found
    governance = deployer.address
    operator = Web3.to_checksum_address(operator or governance)
    registrar = Web3.to_checksum_address(registrar or governance)
    state = state or ExchangeState()
    accounts_root, orders_root, globals_ = genesis(state)

    def create(contract: str, *args: Any) -> str:
        artifact = arts[contract]
        return deployer.deploy(artifact.abi, artifact.bytecode, *args)

    block = w3.eth.block_number
    token = create("token", governance)
    verifiers = _deploy_verifier(deployer, arts, verifier, registrar, proof_params, buffers)
    rollup = create(
        "rollup",
        token,
        verifiers["verifier"],
        governance,
        operator,
        grace_period,
        deposit_reclaim_delay,
        _market_params(markets),
        accounts_root,
        orders_root,
        globals_,
    )
    addresses = {"token": token, **verifiers, "rollup": rollup}
    root = bytes(
        w3.eth.contract(address=Web3.to_checksum_address(rollup), abi=arts["rollup"].abi)
        .functions.state_root()
        .call()
    )
    if root != state.root():
        raise RuntimeError("the rollup's genesis root differs from the L2 state's")
    deployment = Deployment(
        chain_id=w3.eth.chain_id,
        rpc_url=rpc_url,
        block=block,
        governance=governance,
        operator=operator,
        registrar=registrar,
        grace_period=grace_period,
        deposit_reclaim_delay=deposit_reclaim_delay,
        genesis_root=root.hex(),
        addresses=addresses,
        abis={name: arts[name].abi for name in addresses},
        source_hashes={name: arts[name].source_hash for name in addresses},
        verifier_kind=verifier,
        proof_params=params,
        buffers=asdict(buffers),
    )
    if path is not None:
        deployment.write(path)
    return deployment
