"""keccak256 and secp256k1 (Ethereum's), on the fast paths measured here.

`sha3.keccak_256` (safe-pysha3) hashes 64 bytes in about 1.3 µs; the state
tree and the prover's commitments call it millions of times.
"""

from __future__ import annotations

import coincurve
import sha3

from perpnet.core.errors import CoreError, ErrorCode

ZERO_ADDRESS = b"\x00" * 20


def keccak(data: bytes) -> bytes:
    """Ethereum's keccak256 (not FIPS SHA3-256)."""
    return sha3.keccak_256(data).digest()  # type: ignore[no-any-return]


def address_of_public_key(public_key: bytes) -> bytes:
    """The 20-byte Ethereum address of an uncompressed (65-byte) public key."""
    return keccak(public_key[1:])[12:]


class PrivateKey:
    """A secp256k1 account key that signs 32-byte digests Ethereum-style."""

    __slots__ = ("_key", "address")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise CoreError(ErrorCode.INVALID_FIELD, "a private key is 32 bytes")
        self._key = coincurve.PrivateKey(secret)
        self.address: bytes = address_of_public_key(self._key.public_key.format(compressed=False))

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        """A deterministic key for tests and load generators."""
        return cls(keccak(b"perpnet-key:" + seed))

    @property
    def secret(self) -> bytes:
        return self._key.secret

    def sign(self, digest: bytes) -> bytes:
        """65 bytes r || s || v with v in {27, 28}, as ecrecover expects."""
        raw: bytes = self._key.sign_recoverable(digest, hasher=None)
        return raw[:64] + bytes([raw[64] + 27])


def recover(digest: bytes, signature: bytes) -> bytes:
    """The signer's address, or CoreError(BAD_SIGNATURE) for a malformed signature."""
    if len(digest) != 32 or len(signature) != 65 or signature[64] not in (27, 28):
        raise CoreError(ErrorCode.BAD_SIGNATURE, "signature must be 65 bytes r||s||v, v in 27/28")
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([signature[64] - 27]), digest, hasher=None
        )
    except Exception as exc:  # coincurve raises bare Exception/ValueError
        raise CoreError(ErrorCode.BAD_SIGNATURE, f"unrecoverable signature: {exc}") from exc
    return address_of_public_key(public.format(compressed=False))
