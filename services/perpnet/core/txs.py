"""The L2 transaction set. Every state change is one of these.

Each transaction carries the sequencer's timestamp (ms): the core never
reads a clock, so replaying the log reproduces the state exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any, ClassVar, Self, cast

from perpnet.core.crypto import PrivateKey, recover
from perpnet.core.errors import CoreError, ErrorCode
from perpnet.core.orders import SignedOrder
from perpnet.core.typed_data import Domain, StructType

WITHDRAW_TYPE = StructType(
    "Withdraw",
    (
        ("owner", "address"),
        ("subaccount", "uint32"),
        ("amount", "uint128"),
        ("recipient", "address"),
        ("nonce", "uint64"),
        ("expiry", "uint64"),
    ),
)
TRANSFER_TYPE = StructType(
    "Transfer",
    (
        ("owner", "address"),
        ("subaccount", "uint32"),
        ("toOwner", "address"),
        ("toSubaccount", "uint32"),
        ("amount", "uint128"),
        ("nonce", "uint64"),
        ("expiry", "uint64"),
    ),
)
ORACLE_PRICE_TYPE = StructType(
    "OraclePrice", (("market", "uint16"), ("price", "uint128"), ("timestamp", "uint64"))
)


class TxType(IntEnum):
    DEPOSIT = 1
    WITHDRAW = 2
    TRANSFER = 3
    TRADE = 4
    ORACLE_PRICE_TICK = 5
    FUNDING_TICK = 6
    LIQUIDATE = 7
    DELEVERAGE = 8
    FORCED_WITHDRAWAL = 9


def _check_signer(digest: bytes, signature: bytes, owner: bytes, what: str) -> None:
    if recover(digest, signature) != owner:
        raise CoreError(ErrorCode.BAD_SIGNATURE, f"{what} not signed by its owner")


@dataclass(frozen=True, slots=True)
class Deposit:
    """Credits an L1 deposit; L1 deposit ids are consumed strictly in order."""

    timestamp_ms: int
    deposit_id: int
    owner: bytes
    subaccount: int
    amount: int


class SignedRequest:
    """A user request signed by its owner over its typed hash (EIP-712 style)."""

    __slots__ = ()
    STRUCT: ClassVar[StructType]
    SIGNED: ClassVar[tuple[str, ...]]  # attributes in the order of STRUCT's fields
    owner: bytes
    signature: bytes

    def digest(self, domain: Domain) -> bytes:
        return domain.digest(self.STRUCT, tuple(getattr(self, name) for name in self.SIGNED))

    def signed(self, key: PrivateKey, domain: Domain) -> Self:
        return cast(Self, replace(cast(Any, self), signature=key.sign(self.digest(domain))))

    def verify(self, domain: Domain) -> None:
        _check_signer(self.digest(domain), self.signature, self.owner, self.STRUCT.name)


@dataclass(frozen=True, slots=True)
class Withdraw(SignedRequest):
    STRUCT = WITHDRAW_TYPE
    SIGNED = ("owner", "subaccount", "amount", "recipient", "nonce", "expiry_ms")

    timestamp_ms: int
    owner: bytes
    subaccount: int
    amount: int
    recipient: bytes
    nonce: int
    expiry_ms: int
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Transfer(SignedRequest):
    STRUCT = TRANSFER_TYPE
    SIGNED = ("owner", "subaccount", "to_owner", "to_subaccount", "amount", "nonce", "expiry_ms")

    timestamp_ms: int
    owner: bytes
    subaccount: int
    to_owner: bytes
    to_subaccount: int
    amount: int
    nonce: int
    expiry_ms: int
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Trade:
    """Settles one fill between a resting (maker) and an incoming (taker) signed order."""

    timestamp_ms: int
    maker: SignedOrder
    taker: SignedOrder
    size: int
    price: int


@dataclass(frozen=True, slots=True)
class SignedPrice:
    """One oracle signer's observation of one market."""

    signer: bytes
    price: int
    timestamp_ms: int
    signature: bytes

    @classmethod
    def create(
        cls, key: PrivateKey, market_id: int, price: int, timestamp_ms: int, domain: Domain
    ) -> SignedPrice:
        digest = domain.digest(ORACLE_PRICE_TYPE, (market_id, price, timestamp_ms))
        return cls(key.address, price, timestamp_ms, key.sign(digest))

    def verify(self, market_id: int, domain: Domain) -> None:
        digest = domain.digest(ORACLE_PRICE_TYPE, (market_id, self.price, self.timestamp_ms))
        _check_signer(digest, self.signature, self.signer, "oracle price")


@dataclass(frozen=True, slots=True)
class OraclePriceTick:
    """A new index price: the median of a quorum of signed observations."""

    timestamp_ms: int
    market_id: int
    price: int
    observations: tuple[SignedPrice, ...]


@dataclass(frozen=True, slots=True)
class FundingTick:
    """Funding rates (ppb of the oracle price, per tick) for some markets; longs pay if > 0."""

    timestamp_ms: int
    rates: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Liquidate:
    """Closes `size` of an under-maintenance account's position in one market.

    Against a resting order (`maker`) at `price`, within the liquidation
    spread of the oracle and no worse than the bankruptcy price; or, with no
    maker, taken over by the insurance fund at the bankruptcy price.
    """

    timestamp_ms: int
    account_id: int
    market_id: int
    size: int
    price: int
    maker: SignedOrder | None


@dataclass(frozen=True, slots=True)
class Deleverage:
    """Closes a bankrupt position against an opposite one at the bankruptcy price."""

    timestamp_ms: int
    account_id: int
    offset_account_id: int
    market_id: int
    size: int


@dataclass(frozen=True, slots=True)
class ForcedWithdrawal:
    """A withdrawal asked for on L1 (censorship resistance); served for what is free."""

    timestamp_ms: int
    request_id: int
    owner: bytes
    subaccount: int
    amount: int
    recipient: bytes


Tx = (
    Deposit
    | Withdraw
    | Transfer
    | Trade
    | OraclePriceTick
    | FundingTick
    | Liquidate
    | Deleverage
    | ForcedWithdrawal
)

TX_TYPES: dict[type, TxType] = {
    Deposit: TxType.DEPOSIT,
    Withdraw: TxType.WITHDRAW,
    Transfer: TxType.TRANSFER,
    Trade: TxType.TRADE,
    OraclePriceTick: TxType.ORACLE_PRICE_TICK,
    FundingTick: TxType.FUNDING_TICK,
    Liquidate: TxType.LIQUIDATE,
    Deleverage: TxType.DELEVERAGE,
    ForcedWithdrawal: TxType.FORCED_WITHDRAWAL,
}
