"""Orders as traders sign them: kinds, time in force, flags, typed hash.

An order's id is its EIP-712 digest: it commits to every field including the
client nonce and the expiry, so the same signed order can be filled only up
to its size, and never after it expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from perpnet.core.crypto import PrivateKey, recover
from perpnet.core.errors import CoreError, ErrorCode, require
from perpnet.core.markets import Market
from perpnet.core.typed_data import Domain, StructType


class OrderKind(IntEnum):
    LIMIT = 0
    MARKET = 1  # IOC with a worst acceptable price (the signed price)
    STOP_MARKET = 2
    STOP_LIMIT = 3
    TAKE_PROFIT_MARKET = 4
    TAKE_PROFIT_LIMIT = 5


class TimeInForce(IntEnum):
    GTT = 0  # rests until its expiry (good-til-time; a far expiry is good-til-cancel)
    IOC = 1
    FOK = 2
    POST_ONLY = 3


class SelfTrade(IntEnum):
    """What happens when an order would match a resting order of the same owner."""

    CANCEL_MAKER = 0  # the resting order is cancelled, the taker continues (dYdX)
    CANCEL_TAKER = 1
    CANCEL_BOTH = 2


CONDITIONAL_KINDS = frozenset(
    {
        OrderKind.STOP_MARKET,
        OrderKind.STOP_LIMIT,
        OrderKind.TAKE_PROFIT_MARKET,
        OrderKind.TAKE_PROFIT_LIMIT,
    }
)
MARKET_KINDS = frozenset({OrderKind.MARKET, OrderKind.STOP_MARKET, OrderKind.TAKE_PROFIT_MARKET})

ORDER_TYPE = StructType(
    "Order",
    (
        ("owner", "address"),
        ("subaccount", "uint32"),
        ("market", "uint16"),
        ("isBuy", "bool"),
        ("size", "uint128"),
        ("price", "uint128"),
        ("kind", "uint8"),
        ("timeInForce", "uint8"),
        ("triggerPrice", "uint128"),
        ("reduceOnly", "bool"),
        ("selfTrade", "uint8"),
        ("nonce", "uint64"),
        ("expiry", "uint64"),
    ),
)


@dataclass(frozen=True, slots=True)
class Order:
    owner: bytes
    subaccount: int
    market_id: int
    is_buy: bool
    size: int
    price: int
    kind: OrderKind = OrderKind.LIMIT
    tif: TimeInForce = TimeInForce.GTT
    trigger_price: int = 0
    reduce_only: bool = False
    self_trade: SelfTrade = SelfTrade.CANCEL_MAKER
    nonce: int = 0
    expiry_ms: int = 2**63

    def __deepcopy__(self, memo: dict[int, object]) -> Order:
        """Frozen, with immutable fields: shared, not copied (a state holds every order
        ever filled, and prepare_batch copies it, unless in place)."""
        return self

    def fields(self) -> tuple[int | bool | bytes, ...]:
        return (
            self.owner,
            self.subaccount,
            self.market_id,
            self.is_buy,
            self.size,
            self.price,
            int(self.kind),
            int(self.tif),
            self.trigger_price,
            self.reduce_only,
            int(self.self_trade),
            self.nonce,
            self.expiry_ms,
        )

    def digest(self, domain: Domain) -> bytes:
        return domain.digest(ORDER_TYPE, self.fields())

    @property
    def is_conditional(self) -> bool:
        return self.kind in CONDITIONAL_KINDS

    @property
    def is_market(self) -> bool:
        return self.kind in MARKET_KINDS

    def validate(self, market: Market) -> None:
        """Static checks that need no state: sizes on step, prices on tick, sane flags."""
        # hot path (every order): plain ifs, messages built only when refusing
        if market.market_id != self.market_id:
            raise CoreError(ErrorCode.UNKNOWN_MARKET, "wrong market")
        market.check_order_size(self.size)
        market.check_price(self.price)
        kind = self.kind
        if kind in CONDITIONAL_KINDS:
            market.check_price(self.trigger_price)
        elif self.trigger_price:
            raise CoreError(ErrorCode.INVALID_FIELD, "trigger price on a plain order")
        if kind in MARKET_KINDS and self.tif not in (TimeInForce.IOC, TimeInForce.FOK):
            raise CoreError(ErrorCode.INVALID_FIELD, "market orders are IOC or FOK")

    def triggered_by(self, oracle_price: int) -> bool:
        """Stops fire as price moves against the position, take-profits as it moves for it."""
        stop = self.kind in (OrderKind.STOP_MARKET, OrderKind.STOP_LIMIT)
        if self.is_buy == stop:
            return oracle_price >= self.trigger_price
        return oracle_price <= self.trigger_price


@lru_cache(maxsize=1 << 14)
def typed_digest(order: Order, domain: Domain) -> bytes:
    """`order.digest(domain)`, computed once per process: the decoder hashes each order of
    a trade, and the state machine checks that hash again on the order's first fill.

    Only for orders whose field types are exact (decoded from bytes, or passed
    check_fields): 1 == True, so an order with is_buy=1 would find the entry of
    its twin with True instead of being refused by Order.digest.
    """
    return order.digest(domain)


@dataclass(frozen=True, slots=True)
class SignedOrder:
    order: Order
    signature: bytes
    hash: bytes

    @classmethod
    def create(cls, order: Order, key: PrivateKey, domain: Domain) -> SignedOrder:
        require(key.address == order.owner, ErrorCode.NOT_OWNER, "key does not own the order")
        digest = order.digest(domain)
        return cls(order, key.sign(digest), digest)

    @classmethod
    def received(cls, order: Order, signature: bytes, domain: Domain) -> SignedOrder:
        """Recompute the hash of an order that came over the wire (never trust a sent hash)."""
        return cls(order, signature, order.digest(domain))

    def verify(self) -> None:
        signer = recover(self.hash, self.signature)
        if signer != self.order.owner:
            raise CoreError(ErrorCode.BAD_SIGNATURE, "order not signed by its owner")
