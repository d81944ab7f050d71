"""keccak256 Fiat–Shamir transcript.

The state is one 32-byte digest. Absorbing replaces it with
keccak(state || 0x00 || data); the i-th squeeze since the last absorb is
keccak(state || 0x01 || i as 4 bytes big-endian). Every verifier challenge comes
out of the state after everything it depends on was absorbed, and the chain is
cheap to replay on the EVM.

Base elements come from 8 bytes reduced mod p (bias < 2^-32); an extension element
from one whole squeeze (four 8-byte limbs). Query indices are the low bits of a
4-byte word, unbiased because domain sizes are powers of two.
"""

from __future__ import annotations

import numpy as np
import sha3

from perpnet.stark.field import Arr, P, felts_to_bytes

_keccak = sha3.keccak_256


class Transcript:
    __slots__ = ("_counter", "_state")

    def __init__(self, domain: bytes) -> None:
        self._state: bytes = _keccak(b"perpnet.stark.transcript.v1" + domain).digest()
        self._counter = 0

    @property
    def state(self) -> bytes:
        return self._state

    def absorb(self, data: bytes) -> None:
        self._state = _keccak(self._state + b"\x00" + data).digest()
        self._counter = 0

    def absorb_felts(self, values: Arr) -> None:
        """Absorb field elements in their canonical 4-byte little-endian form."""
        self.absorb(felts_to_bytes(values))

    def squeeze(self) -> bytes:
        out: bytes = _keccak(self._state + b"\x01" + self._counter.to_bytes(4, "big")).digest()
        self._counter += 1
        return out

    def challenge_base(self) -> int:
        return int.from_bytes(self.squeeze()[:8], "little") % P

    def challenge_ext(self) -> Arr:
        """A uniformly random extension element as a (4, 1) array."""
        raw = self.squeeze()
        return np.array(
            [[int.from_bytes(raw[i : i + 8], "little") % P] for i in range(0, 32, 8)],
            dtype=np.uint64,
        )

    def challenge_indices(self, count: int, domain_size: int) -> list[int]:
        """`count` indices in [0, domain_size), a power of two; may repeat."""
        if domain_size <= 0 or domain_size & (domain_size - 1):
            raise ValueError("domain size must be a power of two")
        mask = domain_size - 1
        out: list[int] = []
        while len(out) < count:
            raw = self.squeeze()
            for i in range(0, 32, 4):
                if len(out) < count:
                    out.append(int.from_bytes(raw[i : i + 4], "little") & mask)
        return out

    def _pow_digest(self, nonce: int) -> int:
        h = _keccak(self._state + b"\x02" + nonce.to_bytes(8, "big")).digest()
        return int.from_bytes(h[:8], "big")

    def grind(self, bits: int) -> int:
        """The least nonce whose proof-of-work digest starts with `bits` zero bits."""
        if bits == 0:
            return 0
        prefix = _keccak(self._state + b"\x02")
        shift = 64 - bits
        nonce = 0
        while True:
            h = prefix.copy()
            h.update(nonce.to_bytes(8, "big"))
            if int.from_bytes(h.digest()[:8], "big") >> shift == 0:
                return nonce
            nonce += 1

    def check_grinding(self, nonce: int, bits: int) -> bool:
        if bits == 0:
            return nonce == 0
        return self._pow_digest(nonce) >> (64 - bits) == 0
