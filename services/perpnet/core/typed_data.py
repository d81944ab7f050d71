"""EIP-712 style typed hashing: what every signed request commits to.

Signatures cover keccak256(0x1901 || domainSeparator || structHash), so a
signature for one chain, contract or message type cannot be replayed on
another. Field values are ABI-encoded as 32-byte words, as an L1 contract
would encode them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from perpnet.core.crypto import ZERO_ADDRESS, keccak
from perpnet.core.errors import CoreError, ErrorCode

ANVIL_CHAIN_ID = 31337


def word(value: int | bool | bytes | str, kind: str) -> bytes:
    """EIP-712-encode one field as a 32-byte word (strings as their keccak), range-checked."""
    if kind == "address":
        if not isinstance(value, bytes) or len(value) != 20:
            raise CoreError(ErrorCode.INVALID_FIELD, "an address is 20 bytes")
        return b"\x00" * 12 + value
    if kind == "bytes32":
        if not isinstance(value, bytes) or len(value) != 32:
            raise CoreError(ErrorCode.INVALID_FIELD, "bytes32 is 32 bytes")
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise CoreError(ErrorCode.INVALID_FIELD, "a string field needs a str")
        return keccak(value.encode())
    if kind == "bool":
        return (1 if value else 0).to_bytes(32, "big")
    if isinstance(value, bool) or not isinstance(value, int):
        raise CoreError(ErrorCode.INVALID_FIELD, f"{kind} needs an integer")
    bits = int(kind[4:] if kind.startswith("uint") else kind[3:])
    if kind.startswith("uint"):
        if not 0 <= value < 1 << bits:
            raise CoreError(ErrorCode.INVALID_FIELD, f"{value} out of range for {kind}")
        return value.to_bytes(32, "big")
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise CoreError(ErrorCode.INVALID_FIELD, f"{value} out of range for {kind}")
    return value.to_bytes(32, "big", signed=True)


@dataclass(frozen=True, slots=True)
class StructType:
    """A named struct of static fields, with its EIP-712 type hash."""

    name: str
    fields: tuple[tuple[str, str], ...]

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(f'{t} {n}' for n, t in self.fields)})"

    @property
    def type_hash(self) -> bytes:
        return keccak(self.signature.encode())

    def struct_hash(self, values: Sequence[int | bool | bytes | str]) -> bytes:
        if len(values) != len(self.fields):
            raise CoreError(ErrorCode.INVALID_FIELD, f"{self.name} has {len(self.fields)} fields")
        encoded = b"".join(word(v, t) for v, (_, t) in zip(values, self.fields, strict=True))
        return keccak(self.type_hash + encoded)


DOMAIN_TYPE = StructType(
    "EIP712Domain",
    (
        ("name", "string"),
        ("version", "string"),
        ("chainId", "uint256"),
        ("verifyingContract", "address"),
    ),
)


@dataclass(frozen=True, slots=True)
class Domain:
    """Which deployment a signature is for."""

    chain_id: int = ANVIL_CHAIN_ID
    verifying_contract: bytes = ZERO_ADDRESS
    name: str = "perpnet"
    version: str = "1"
    separator: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        separator = DOMAIN_TYPE.struct_hash(
            (self.name, self.version, self.chain_id, self.verifying_contract)
        )
        object.__setattr__(self, "separator", separator)

    def digest(self, struct: StructType, values: Sequence[int | bool | bytes]) -> bytes:
        return keccak(b"\x19\x01" + self.separator + struct.struct_hash(values))
