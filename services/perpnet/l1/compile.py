"""Compile the rollup's Vyper contracts in-process, cached by source and compiler version.

Compiling takes seconds and a deployment must know whether the code on chain
is the code in the tree, so every artifact carries the hash of its source and
of the compiler version: the same hash means the same bytecode.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import vyper  # type: ignore[import-untyped]
from vyper.compiler import compile_code  # type: ignore[import-untyped]

from perpnet.core.crypto import keccak

CONTRACTS = Path(__file__).resolve().parent / "contracts"
NAMES = ("collateral_token", "fact_registry", "rollup")

_KiB = 1024


STATEMENT_LIMIT_VARIABLES = (
    "PERPNET_L1_MAX_STATEMENT_BYTES",
    "PERPNET_SEQUENCER_BATCH_MAX_STATEMENT_BYTES",
)
"""Where a deployment's statement limit comes from, first set first: by default the
sequencer's, so that one variable sizes both."""

ANY_PROOF_ROOM = 200_000 + 256
"""stark_lib.MAX_PROOF, the longest STARK proof the verifier takes, and verify_proof's ABI
heads and padding around the two byte strings."""


def constant_pattern(name: str) -> str:
    """A uint256 constant's line in a Vyper source: group 1 its head, group 2 its value."""
    return rf"^({name}: (?:public\()?constant\(uint256\)\)? = )([0-9_]+)"


def _round_up(n: int, unit: int = 32 * _KiB) -> int:
    return -(-n // unit) * unit


@dataclass(frozen=True, slots=True)
class Buffers:
    """The longest batch statement and packed proof (statement and STARK, as
    stark_verifier.pack_batch_proof makes them) a deployment takes.

    They are compile-time sizes of the contracts' buffers, and every state update pays
    EVM memory for the maximum whatever its batch's size, so a deployment takes the
    smallest that fits its batches: the defaults fit a 1,024-transaction batch touching
    200 accounts; larger batches need a deployment built for them."""

    statement: int = 172_032
    packed: int = 294_912

    MAX_STATEMENT = 1024 * _KiB
    MAX_PACKED = 2048 * _KiB

    def __post_init__(self) -> None:
        if not 4 * _KiB <= self.statement <= self.MAX_STATEMENT:
            raise ValueError(
                f"max statement bytes must be in [{4 * _KiB:,}, {self.MAX_STATEMENT:,}], "
                f"got {self.statement:,}"
            )
        if not self.statement + 4 * _KiB <= self.packed <= self.MAX_PACKED:
            raise ValueError(
                f"max packed proof bytes must be in [statement + {4 * _KiB:,}, "
                f"{self.MAX_PACKED:,}], got {self.packed:,} for a statement of "
                f"{self.statement:,}"
            )

    @classmethod
    def for_statement(cls, statement: int) -> Buffers:
        """Sized for statements of up to `statement` bytes, with room for the STARK: as the
        defaults leave it (proofs of traces up to 16,384 rows, which no batch whose
        statement fits the default takes) up to the default statement, else room for any
        proof the on-chain verifier takes (stark_lib.MAX_PROOF and the call's heads)."""
        default = cls()
        if statement <= default.statement:
            return cls(statement, statement + default.proof_room)
        return cls(statement, statement + ANY_PROOF_ROOM)

    @property
    def proof_room(self) -> int:
        return self.packed - self.statement

    @classmethod
    def fitting(cls, statement: int, packed: int) -> Buffers:
        """The defaults if they hold these sizes, else the sizes rounded up to 32 KiB."""
        default = cls()
        if statement <= default.statement and packed <= default.packed:
            return default
        return cls(
            max(_round_up(statement), default.statement), max(_round_up(packed), default.packed)
        )

    def constants(self, name: str) -> dict[str, int]:
        """The buffer constants of one contract's source, by name."""
        return {
            "stark_lib": {"MAX_PUBLIC": self.statement},
            "stark_batch_verifier": {"MAX_PACKED": self.packed},
            "fact_registry": {"MAX_PROOF": self.packed},
            # the verifier's verify(bytes32, bytes) calldata around the packed proof
            "rollup": {"MAX_PROOF": self.packed + 100},
        }.get(name, {})

    def source(self, name: str) -> str:
        """A contract's source with these buffer sizes (the file itself for the defaults)."""
        text = (CONTRACTS / f"{name}.vy").read_text(encoding="utf-8")
        if self == DEFAULT_BUFFERS:
            return text
        for constant, value in self.constants(name).items():
            pattern = constant_pattern(constant)
            text, found = re.subn(pattern, rf"\g<1>{value:_}", text, count=1, flags=re.M)
            if found != 1:
                raise LookupError(f"{name}.vy has no uint256 constant {constant}")
        return text


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: list[dict[str, object]]
    bytecode: bytes
    source_hash: str  # keccak(compiler version || source), hex


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("PERPNET_VYPER_CACHE", str(Path(base) / "perpnet" / "vyper")))


DEFAULT_BUFFERS = Buffers()


def source_hash(name: str, buffers: Buffers = DEFAULT_BUFFERS) -> str:
    source = buffers.source(name).encode()
    return keccak(vyper.__version__.encode() + b"\0" + source).hex()


def compile_contract(name: str, buffers: Buffers = DEFAULT_BUFFERS) -> Artifact:
    """The contract's ABI and deployment bytecode, from the cache when the source is unchanged."""
    digest = source_hash(name, buffers)
    cached = cache_dir() / f"{name}-{digest}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        return Artifact(name, data["abi"], bytes.fromhex(data["bytecode"]), digest)
    path = CONTRACTS / f"{name}.vy"
    out = compile_code(
        buffers.source(name), contract_path=str(path), output_formats=["abi", "bytecode"]
    )
    bytecode = bytes.fromhex(out["bytecode"].removeprefix("0x"))
    with contextlib.suppress(OSError):  # a read-only cache (a container's) only costs time
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"abi": out["abi"], "bytecode": bytecode.hex()}))
        tmp.replace(cached)  # atomic: concurrent compilers never read half a file
    return Artifact(name, out["abi"], bytecode, digest)


def compile_all(buffers: Buffers = DEFAULT_BUFFERS) -> dict[str, Artifact]:
    return {name: compile_contract(name, buffers) for name in NAMES}
