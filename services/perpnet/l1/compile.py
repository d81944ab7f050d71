"""Compile the rollup's Vyper contracts in-process, cached by source and compiler version.

Compiling takes seconds and a deployment must know whether the code on chain
is the code in the tree, so every artifact carries the hash of its source and
of the compiler version: the same hash means the same bytecode.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import vyper  # type: ignore[import-untyped]
from vyper.compiler import compile_code  # type: ignore[import-untyped]

from perpnet.core.crypto import keccak

CONTRACTS = Path(__file__).resolve().parent / "contracts"
NAMES = ("collateral_token", "fact_registry", "rollup")


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: list[dict[str, object]]
    bytecode: bytes
    source_hash: str  # keccak(compiler version || source), hex


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("PERPNET_VYPER_CACHE", str(Path(base) / "perpnet" / "vyper")))


def source_hash(name: str) -> str:
    source = (CONTRACTS / f"{name}.vy").read_bytes()
    return keccak(vyper.__version__.encode() + b"\0" + source).hex()


def compile_contract(name: str) -> Artifact:
    """The contract's ABI and deployment bytecode, from the cache when the source is unchanged."""
    digest = source_hash(name)
    cached = cache_dir() / f"{name}-{digest}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        return Artifact(name, data["abi"], bytes.fromhex(data["bytecode"]), digest)
    path = CONTRACTS / f"{name}.vy"
    out = compile_code(
        path.read_text(), contract_path=str(path), output_formats=["abi", "bytecode"]
    )
    bytecode = bytes.fromhex(out["bytecode"].removeprefix("0x"))
    with contextlib.suppress(OSError):  # a read-only cache (a container's) only costs time
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"abi": out["abi"], "bytecode": bytecode.hex()}))
        tmp.replace(cached)  # atomic: concurrent compilers never read half a file
    return Artifact(name, out["abi"], bytecode, digest)


def compile_all() -> dict[str, Artifact]:
    return {name: compile_contract(name) for name in NAMES}
