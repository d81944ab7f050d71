from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitTxRequest(_message.Message):
    __slots__ = ("tx",)
    TX_FIELD_NUMBER: _ClassVar[int]
    tx: bytes
    def __init__(self, tx: _Optional[bytes] = ...) -> None: ...

class SubmitTxReply(_message.Message):
    __slots__ = ("seq", "tx_hash", "batch_id", "duplicate")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    tx_hash: bytes
    batch_id: int
    duplicate: bool
    def __init__(self, seq: _Optional[int] = ..., tx_hash: _Optional[bytes] = ..., batch_id: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StateSummary(_message.Message):
    __slots__ = ("root", "last_seq", "next_batch_id", "globals", "open_batch_txs")
    ROOT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEXT_BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    GLOBALS_FIELD_NUMBER: _ClassVar[int]
    OPEN_BATCH_TXS_FIELD_NUMBER: _ClassVar[int]
    root: bytes
    last_seq: int
    next_batch_id: int
    globals: bytes
    open_batch_txs: int
    def __init__(self, root: _Optional[bytes] = ..., last_seq: _Optional[int] = ..., next_batch_id: _Optional[int] = ..., globals: _Optional[bytes] = ..., open_batch_txs: _Optional[int] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("account_id", "owner")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    owner: OwnerKey
    def __init__(self, account_id: _Optional[int] = ..., owner: _Optional[_Union[OwnerKey, _Mapping]] = ...) -> None: ...

class OwnerKey(_message.Message):
    __slots__ = ("owner", "subaccount")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SUBACCOUNT_FIELD_NUMBER: _ClassVar[int]
    owner: bytes
    subaccount: int
    def __init__(self, owner: _Optional[bytes] = ..., subaccount: _Optional[int] = ...) -> None: ...

class AccountReply(_message.Message):
    __slots__ = ("account_id", "account", "root", "proof")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    account: bytes
    root: bytes
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, account_id: _Optional[int] = ..., account: _Optional[bytes] = ..., root: _Optional[bytes] = ..., proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("batch_id", "with_txs")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    WITH_TXS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    with_txs: bool
    def __init__(self, batch_id: _Optional[int] = ..., with_txs: _Optional[bool] = ...) -> None: ...

class BatchReply(_message.Message):
    __slots__ = ("batch_id", "old_root", "new_root", "public_inputs", "state_diff", "first_seq", "last_seq", "txs", "status")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_ROOT_FIELD_NUMBER: _ClassVar[int]
    NEW_ROOT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_INPUTS_FIELD_NUMBER: _ClassVar[int]
    STATE_DIFF_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    TXS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    old_root: bytes
    new_root: bytes
    public_inputs: bytes
    state_diff: bytes
    first_seq: int
    last_seq: int
    txs: _containers.RepeatedScalarFieldContainer[bytes]
    status: str
    def __init__(self, batch_id: _Optional[int] = ..., old_root: _Optional[bytes] = ..., new_root: _Optional[bytes] = ..., public_inputs: _Optional[bytes] = ..., state_diff: _Optional[bytes] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., txs: _Optional[_Iterable[bytes]] = ..., status: _Optional[str] = ...) -> None: ...

class StreamBatchesRequest(_message.Message):
    __slots__ = ("from_batch_id", "with_txs")
    FROM_BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    WITH_TXS_FIELD_NUMBER: _ClassVar[int]
    from_batch_id: int
    with_txs: bool
    def __init__(self, from_batch_id: _Optional[int] = ..., with_txs: _Optional[bool] = ...) -> None: ...

class LoggedTx(_message.Message):
    __slots__ = ("seq", "tx", "tx_hash", "batch_id", "received_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TX_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    tx: bytes
    tx_hash: bytes
    batch_id: int
    received_ms: int
    def __init__(self, seq: _Optional[int] = ..., tx: _Optional[bytes] = ..., tx_hash: _Optional[bytes] = ..., batch_id: _Optional[int] = ..., received_ms: _Optional[int] = ...) -> None: ...

class GetTxsRequest(_message.Message):
    __slots__ = ("from_seq", "limit")
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    from_seq: int
    limit: int
    def __init__(self, from_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class TxsReply(_message.Message):
    __slots__ = ("txs", "last_seq")
    TXS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    txs: _containers.RepeatedCompositeFieldContainer[LoggedTx]
    last_seq: int
    def __init__(self, txs: _Optional[_Iterable[_Union[LoggedTx, _Mapping]]] = ..., last_seq: _Optional[int] = ...) -> None: ...

class StreamTxsRequest(_message.Message):
    __slots__ = ("from_seq",)
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    from_seq: int
    def __init__(self, from_seq: _Optional[int] = ...) -> None: ...

class SubmitTxsRequest(_message.Message):
    __slots__ = ("txs",)
    TXS_FIELD_NUMBER: _ClassVar[int]
    txs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, txs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SubmitTxResult(_message.Message):
    __slots__ = ("applied", "seq", "tx_hash", "batch_id", "duplicate", "refused")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    seq: int
    tx_hash: bytes
    batch_id: int
    duplicate: bool
    refused: str
    def __init__(self, applied: _Optional[bool] = ..., seq: _Optional[int] = ..., tx_hash: _Optional[bytes] = ..., batch_id: _Optional[int] = ..., duplicate: _Optional[bool] = ..., refused: _Optional[str] = ...) -> None: ...

class SubmitTxsReply(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SubmitTxResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SubmitTxResult, _Mapping]]] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("max_batch_id", "min_batch_id")
    MAX_BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    max_batch_id: int
    min_batch_id: int
    def __init__(self, max_batch_id: _Optional[int] = ..., min_batch_id: _Optional[int] = ...) -> None: ...

class CheckpointReply(_message.Message):
    __slots__ = ("batch_id", "last_seq", "root", "state")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    last_seq: int
    root: bytes
    state: bytes
    def __init__(self, batch_id: _Optional[int] = ..., last_seq: _Optional[int] = ..., root: _Optional[bytes] = ..., state: _Optional[bytes] = ...) -> None: ...
