from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Stage(_message.Message):
    __slots__ = ("name", "at_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    at_ms: int
    def __init__(self, name: _Optional[str] = ..., at_ms: _Optional[int] = ...) -> None: ...

class GetDepositRequest(_message.Message):
    __slots__ = ("l1_id",)
    L1_ID_FIELD_NUMBER: _ClassVar[int]
    l1_id: int
    def __init__(self, l1_id: _Optional[int] = ...) -> None: ...

class DepositInfo(_message.Message):
    __slots__ = ("l1_id", "owner", "subaccount", "amount", "status", "stages", "l1_block", "l1_tx")
    L1_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SUBACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    L1_BLOCK_FIELD_NUMBER: _ClassVar[int]
    L1_TX_FIELD_NUMBER: _ClassVar[int]
    l1_id: int
    owner: bytes
    subaccount: int
    amount: str
    status: str
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    l1_block: int
    l1_tx: bytes
    def __init__(self, l1_id: _Optional[int] = ..., owner: _Optional[bytes] = ..., subaccount: _Optional[int] = ..., amount: _Optional[str] = ..., status: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ..., l1_block: _Optional[int] = ..., l1_tx: _Optional[bytes] = ...) -> None: ...

class GetWithdrawalRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class WithdrawalInfo(_message.Message):
    __slots__ = ("id", "account", "recipient", "amount", "status", "stages", "batch_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    account: int
    recipient: bytes
    amount: str
    status: str
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    batch_id: int
    def __init__(self, id: _Optional[int] = ..., account: _Optional[int] = ..., recipient: _Optional[bytes] = ..., amount: _Optional[str] = ..., status: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ..., batch_id: _Optional[int] = ...) -> None: ...

class GetL1StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class L1Status(_message.Message):
    __slots__ = ("chain_id", "head_block", "rollup", "posted_batch_id", "verified_batch_id", "verified_root", "frozen", "pending_forced")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    HEAD_BLOCK_FIELD_NUMBER: _ClassVar[int]
    ROLLUP_FIELD_NUMBER: _ClassVar[int]
    POSTED_BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_ROOT_FIELD_NUMBER: _ClassVar[int]
    FROZEN_FIELD_NUMBER: _ClassVar[int]
    PENDING_FORCED_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    head_block: int
    rollup: bytes
    posted_batch_id: int
    verified_batch_id: int
    verified_root: bytes
    frozen: bool
    pending_forced: int
    def __init__(self, chain_id: _Optional[int] = ..., head_block: _Optional[int] = ..., rollup: _Optional[bytes] = ..., posted_batch_id: _Optional[int] = ..., verified_batch_id: _Optional[int] = ..., verified_root: _Optional[bytes] = ..., frozen: _Optional[bool] = ..., pending_forced: _Optional[int] = ...) -> None: ...
