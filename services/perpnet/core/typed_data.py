"""EIP-712 style typed hashing: what every signed request commits to.

Signatures cover keccak256(0x1901 || domainSeparator || structHash), so a
signature for one chain, contract or message type cannot be replayed on
another. Field values are ABI-encoded as 32-byte words, as an L1 contract
would encode them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from perpnet.core.crypto import ZERO_ADDRESS, keccak
from perpnet.core.errors import CoreError, ErrorCode

ANVIL_CHAIN_ID = 31337
_TRUE = (1).to_bytes(32, "big")
_FALSE = bytes(32)
Value = int | bool | bytes | str


def _bytes_field(size: int, pad: int, what: str) -> Callable[[Value], bytes]:
    prefix = bytes(pad)

    def encode(value: Value) -> bytes:
        if not isinstance(value, bytes) or len(value) != size:
            raise CoreError(ErrorCode.INVALID_FIELD, f"{what} is {size} bytes")
        return prefix + value

    return encode


def _int_field(kind: str) -> Callable[[Value], bytes]:
    signed = kind.startswith("int")
    bits = int(kind[3:] if signed else kind[4:])
    low, high = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)

    def encode(value: Value) -> bytes:
        if type(value) is not int and not isinstance(value, IntEnum):
            raise CoreError(ErrorCode.INVALID_FIELD, f"{kind} needs an integer")
        if not low <= value < high:
            raise CoreError(ErrorCode.INVALID_FIELD, f"{value} out of range for {kind}")
        return value.to_bytes(32, "big", signed=signed)

    return encode


def _bool_field(value: Value) -> bytes:
    if not isinstance(value, bool):
        raise CoreError(ErrorCode.INVALID_FIELD, "a bool field needs True or False")
    return _TRUE if value else _FALSE


def _string_field(value: Value) -> bytes:
    if not isinstance(value, str):
        raise CoreError(ErrorCode.INVALID_FIELD, "a string field needs a str")
    return keccak(value.encode())


def encoder(kind: str) -> Callable[[Value], bytes]:
    """The range-checked EIP-712 word encoder of one field type (strings as their keccak)."""
    if kind == "address":
        return _bytes_field(20, 12, "an address")
    if kind == "bytes32":
        return _bytes_field(32, 0, "bytes32")
    if kind == "bool":
        return _bool_field
    if kind == "string":
        return _string_field
    return _int_field(kind)


def word(value: Value, kind: str) -> bytes:
    """EIP-712-encode one field as a 32-byte word, range-checked by its type."""
    return encoder(kind)(value)


@dataclass(frozen=True, slots=True)
class StructType:
    """A named struct of static fields, with its EIP-712 type hash."""

    name: str
    fields: tuple[tuple[str, str], ...]
    type_hash: bytes = field(init=False, repr=False, compare=False)
    encoders: tuple[Callable[[Value], bytes], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type_hash", keccak(self.signature.encode()))
        object.__setattr__(self, "encoders", tuple(encoder(kind) for _, kind in self.fields))

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(f'{t} {n}' for n, t in self.fields)})"

    def struct_hash(self, values: Sequence[Value]) -> bytes:
        if len(values) != len(self.encoders):
            raise CoreError(ErrorCode.INVALID_FIELD, f"{self.name} has {len(self.fields)} fields")
        encoded = b"".join([enc(v) for enc, v in zip(self.encoders, values, strict=True)])
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

    def digest(self, struct: StructType, values: Sequence[Value]) -> bytes:
        return keccak(b"\x19\x01" + self.separator + struct.struct_hash(values))
