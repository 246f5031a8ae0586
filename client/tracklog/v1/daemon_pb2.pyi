from tracklog.v1 import records_pb2 as _records_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Attach(_message.Message):
    __slots__ = ("ref", "run_dir", "pid", "server")
    REF_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    ref: _records_pb2.RunRef
    run_dir: str
    pid: int
    server: str
    def __init__(self, ref: _Optional[_Union[_records_pb2.RunRef, _Mapping]] = ..., run_dir: _Optional[str] = ..., pid: _Optional[int] = ..., server: _Optional[str] = ...) -> None: ...

class FrameBatch(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[_records_pb2.Frame]
    def __init__(self, frames: _Optional[_Iterable[_Union[_records_pb2.Frame, _Mapping]]] = ...) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("attach", "frames")
    ATTACH_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    attach: Attach
    frames: FrameBatch
    def __init__(self, attach: _Optional[_Union[Attach, _Mapping]] = ..., frames: _Optional[_Union[FrameBatch, _Mapping]] = ...) -> None: ...

class Attached(_message.Message):
    __slots__ = ("durable_seq", "url")
    DURABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    durable_seq: int
    url: str
    def __init__(self, durable_seq: _Optional[int] = ..., url: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("durable_seq",)
    DURABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    durable_seq: int
    def __init__(self, durable_seq: _Optional[int] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class DaemonMessage(_message.Message):
    __slots__ = ("attached", "ack", "stop")
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    attached: Attached
    ack: Ack
    stop: StopRequest
    def __init__(self, attached: _Optional[_Union[Attached, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., stop: _Optional[_Union[StopRequest, _Mapping]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunStatus(_message.Message):
    __slots__ = ("ref", "run_dir", "attached", "durable_seq", "synced_seq", "server")
    REF_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    DURABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    SYNCED_SEQ_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    ref: _records_pb2.RunRef
    run_dir: str
    attached: bool
    durable_seq: int
    synced_seq: int
    server: str
    def __init__(self, ref: _Optional[_Union[_records_pb2.RunRef, _Mapping]] = ..., run_dir: _Optional[str] = ..., attached: _Optional[bool] = ..., durable_seq: _Optional[int] = ..., synced_seq: _Optional[int] = ..., server: _Optional[str] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("pid", "version", "local_server", "runs", "started_at")
    PID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LOCAL_SERVER_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    pid: int
    version: str
    local_server: str
    runs: _containers.RepeatedCompositeFieldContainer[RunStatus]
    started_at: float
    def __init__(self, pid: _Optional[int] = ..., version: _Optional[str] = ..., local_server: _Optional[str] = ..., runs: _Optional[_Iterable[_Union[RunStatus, _Mapping]]] = ..., started_at: _Optional[float] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
