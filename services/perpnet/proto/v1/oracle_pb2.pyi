from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetPriceRequest(_message.Message):
    __slots__ = ("market_id",)
    MARKET_ID_FIELD_NUMBER: _ClassVar[int]
    market_id: int
    def __init__(self, market_id: _Optional[int] = ...) -> None: ...

class StreamPricesRequest(_message.Message):
    __slots__ = ("market_ids",)
    MARKET_IDS_FIELD_NUMBER: _ClassVar[int]
    market_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, market_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class PriceTick(_message.Message):
    __slots__ = ("market_id", "price", "timestamp_ms", "tx")
    MARKET_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    TX_FIELD_NUMBER: _ClassVar[int]
    market_id: int
    price: str
    timestamp_ms: int
    tx: bytes
    def __init__(self, market_id: _Optional[int] = ..., price: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., tx: _Optional[bytes] = ...) -> None: ...
