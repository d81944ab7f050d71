from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProverStatus(_message.Message):
    __slots__ = ("worker_id", "busy", "batch_id", "started_ms", "proven", "last_prove_ms")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    PROVEN_FIELD_NUMBER: _ClassVar[int]
    LAST_PROVE_MS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    busy: bool
    batch_id: int
    started_ms: int
    proven: int
    last_prove_ms: int
    def __init__(self, worker_id: _Optional[str] = ..., busy: _Optional[bool] = ..., batch_id: _Optional[int] = ..., started_ms: _Optional[int] = ..., proven: _Optional[int] = ..., last_prove_ms: _Optional[int] = ...) -> None: ...
