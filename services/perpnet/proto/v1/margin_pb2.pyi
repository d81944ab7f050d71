from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CheckOrderRequest(_message.Message):
    __slots__ = ("order", "open_orders")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    OPEN_ORDERS_FIELD_NUMBER: _ClassVar[int]
    order: bytes
    open_orders: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, order: _Optional[bytes] = ..., open_orders: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CheckOrderReply(_message.Message):
    __slots__ = ("ok", "reason", "position", "risk", "message")
    OK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    reason: str
    position: str
    risk: AccountRisk
    message: str
    def __init__(self, ok: _Optional[bool] = ..., reason: _Optional[str] = ..., position: _Optional[str] = ..., risk: _Optional[_Union[AccountRisk, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class GetAccountRiskRequest(_message.Message):
    __slots__ = ("owner", "subaccount")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SUBACCOUNT_FIELD_NUMBER: _ClassVar[int]
    owner: bytes
    subaccount: int
    def __init__(self, owner: _Optional[bytes] = ..., subaccount: _Optional[int] = ...) -> None: ...

class AccountRisk(_message.Message):
    __slots__ = ("account_id", "value", "initial", "maintenance", "liquidatable", "as_of_seq")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_FIELD_NUMBER: _ClassVar[int]
    LIQUIDATABLE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_SEQ_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    value: str
    initial: str
    maintenance: str
    liquidatable: bool
    as_of_seq: int
    def __init__(self, account_id: _Optional[int] = ..., value: _Optional[str] = ..., initial: _Optional[str] = ..., maintenance: _Optional[str] = ..., liquidatable: _Optional[bool] = ..., as_of_seq: _Optional[int] = ...) -> None: ...
