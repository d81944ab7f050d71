from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignedOrder(_message.Message):
    __slots__ = ("order", "signature")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    order: bytes
    signature: bytes
    def __init__(self, order: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PlaceOrderRequest(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: SignedOrder
    def __init__(self, order: _Optional[_Union[SignedOrder, _Mapping]] = ...) -> None: ...

class AmendOrderRequest(_message.Message):
    __slots__ = ("old_hash", "order")
    OLD_HASH_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    old_hash: bytes
    order: SignedOrder
    def __init__(self, old_hash: _Optional[bytes] = ..., order: _Optional[_Union[SignedOrder, _Mapping]] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_hash", "owner")
    ORDER_HASH_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    order_hash: bytes
    owner: bytes
    def __init__(self, order_hash: _Optional[bytes] = ..., owner: _Optional[bytes] = ...) -> None: ...

class Fill(_message.Message):
    __slots__ = ("maker_hash", "taker_hash", "size", "price")
    MAKER_HASH_FIELD_NUMBER: _ClassVar[int]
    TAKER_HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    maker_hash: bytes
    taker_hash: bytes
    size: str
    price: str
    def __init__(self, maker_hash: _Optional[bytes] = ..., taker_hash: _Optional[bytes] = ..., size: _Optional[str] = ..., price: _Optional[str] = ...) -> None: ...

class Cancelled(_message.Message):
    __slots__ = ("order_hash", "size", "reason")
    ORDER_HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    order_hash: bytes
    size: str
    reason: str
    def __init__(self, order_hash: _Optional[bytes] = ..., size: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class OrderResult(_message.Message):
    __slots__ = ("order_hash", "fills", "resting", "pending", "cancelled")
    ORDER_HASH_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    RESTING_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    order_hash: bytes
    fills: _containers.RepeatedCompositeFieldContainer[Fill]
    resting: str
    pending: bool
    cancelled: _containers.RepeatedCompositeFieldContainer[Cancelled]
    def __init__(self, order_hash: _Optional[bytes] = ..., fills: _Optional[_Iterable[_Union[Fill, _Mapping]]] = ..., resting: _Optional[str] = ..., pending: _Optional[bool] = ..., cancelled: _Optional[_Iterable[_Union[Cancelled, _Mapping]]] = ...) -> None: ...

class CancelOrderReply(_message.Message):
    __slots__ = ("cancelled",)
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    cancelled: Cancelled
    def __init__(self, cancelled: _Optional[_Union[Cancelled, _Mapping]] = ...) -> None: ...

class GetBookRequest(_message.Message):
    __slots__ = ("market_id", "levels")
    MARKET_ID_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    market_id: int
    levels: int
    def __init__(self, market_id: _Optional[int] = ..., levels: _Optional[int] = ...) -> None: ...

class Level(_message.Message):
    __slots__ = ("price", "size")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    price: str
    size: str
    def __init__(self, price: _Optional[str] = ..., size: _Optional[str] = ...) -> None: ...

class Book(_message.Message):
    __slots__ = ("market_id", "bids", "asks", "timestamp_ms")
    MARKET_ID_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    market_id: int
    bids: _containers.RepeatedCompositeFieldContainer[Level]
    asks: _containers.RepeatedCompositeFieldContainer[Level]
    timestamp_ms: int
    def __init__(self, market_id: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class StreamTradesRequest(_message.Message):
    __slots__ = ("market_ids",)
    MARKET_IDS_FIELD_NUMBER: _ClassVar[int]
    market_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, market_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class TradeEvent(_message.Message):
    __slots__ = ("market_id", "fill", "taker_is_buy", "timestamp_ms")
    MARKET_ID_FIELD_NUMBER: _ClassVar[int]
    FILL_FIELD_NUMBER: _ClassVar[int]
    TAKER_IS_BUY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    market_id: int
    fill: Fill
    taker_is_buy: bool
    timestamp_ms: int
    def __init__(self, market_id: _Optional[int] = ..., fill: _Optional[_Union[Fill, _Mapping]] = ..., taker_is_buy: _Optional[bool] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class GetImpactPricesRequest(_message.Message):
    __slots__ = ("market_id", "notional")
    MARKET_ID_FIELD_NUMBER: _ClassVar[int]
    NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    market_id: int
    notional: str
    def __init__(self, market_id: _Optional[int] = ..., notional: _Optional[str] = ...) -> None: ...

class ImpactPrices(_message.Message):
    __slots__ = ("market_id", "impact_bid", "impact_ask", "timestamp_ms")
    MARKET_ID_FIELD_NUMBER: _ClassVar[int]
    IMPACT_BID_FIELD_NUMBER: _ClassVar[int]
    IMPACT_ASK_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    market_id: int
    impact_bid: str
    impact_ask: str
    timestamp_ms: int
    def __init__(self, market_id: _Optional[int] = ..., impact_bid: _Optional[str] = ..., impact_ask: _Optional[str] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class PlaceOrdersRequest(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[SignedOrder]
    def __init__(self, orders: _Optional[_Iterable[_Union[SignedOrder, _Mapping]]] = ...) -> None: ...

class PlaceOrderOutcome(_message.Message):
    __slots__ = ("result", "refused")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    result: OrderResult
    refused: Refusal
    def __init__(self, result: _Optional[_Union[OrderResult, _Mapping]] = ..., refused: _Optional[_Union[Refusal, _Mapping]] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("status", "message")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: str
    message: str
    def __init__(self, status: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class PlaceOrdersReply(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[PlaceOrderOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[PlaceOrderOutcome, _Mapping]]] = ...) -> None: ...
