"""Typed-data requests only the gateway checks: a signed cancel.

A cancel is not an L2 transaction (nothing about it is proven), but only the
order's owner may ask for it, so it is signed like everything else, over
`Cancel(address owner, bytes32 orderHash, uint64 expiry)` in the exchange's
EIP-712 domain. The expiry bounds how long a captured cancel can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpnet.core.crypto import PrivateKey, recover
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.typed_data import Domain, StructType

CANCEL_TYPE = StructType(
    "Cancel", (("owner", "address"), ("orderHash", "bytes32"), ("expiry", "uint64"))
)


@dataclass(frozen=True, slots=True)
class SignedCancel:
    owner: bytes
    order_hash: bytes
    expiry_ms: int
    signature: bytes = b""

    def digest(self, domain: Domain) -> bytes:
        return domain.digest(CANCEL_TYPE, (self.owner, self.order_hash, self.expiry_ms))

    def signed(self, key: PrivateKey, domain: Domain) -> SignedCancel:
        return SignedCancel(
            self.owner, self.order_hash, self.expiry_ms, key.sign(self.digest(domain))
        )

    def verify(self, domain: Domain, now_ms: int) -> None:
        """Refuse an expired cancel (EXPIRED) or one its owner did not sign (BAD_SIGNATURE)."""
        if now_ms > self.expiry_ms:
            raise CoreError(ErrorCode.EXPIRED, "cancel request expired")
        if recover(self.digest(domain), self.signature) != self.owner:
            raise CoreError(ErrorCode.BAD_SIGNATURE, "cancel not signed by the order's owner")
