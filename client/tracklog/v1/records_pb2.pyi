from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_FINISHED: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]
    RUN_STATE_KILLED: _ClassVar[RunState]
    RUN_STATE_CRASHED: _ClassVar[RunState]

class ColumnType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_TYPE_UNSPECIFIED: _ClassVar[ColumnType]
    COLUMN_TYPE_FLOAT: _ClassVar[ColumnType]
    COLUMN_TYPE_INT: _ClassVar[ColumnType]
    COLUMN_TYPE_JSON: _ClassVar[ColumnType]
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_FINISHED: RunState
RUN_STATE_FAILED: RunState
RUN_STATE_KILLED: RunState
RUN_STATE_CRASHED: RunState
COLUMN_TYPE_UNSPECIFIED: ColumnType
COLUMN_TYPE_FLOAT: ColumnType
COLUMN_TYPE_INT: ColumnType
COLUMN_TYPE_JSON: ColumnType

class RunRef(_message.Message):
    __slots__ = ("entity", "project", "id")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    entity: str
    project: str
    id: str
    def __init__(self, entity: _Optional[str] = ..., project: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class RunStart(_message.Message):
    __slots__ = ("ref", "name", "notes", "tags", "group", "job_type", "config_json", "start_time", "pid", "host", "run_dir", "offline", "resume")
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    ref: RunRef
    name: str
    notes: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    group: str
    job_type: str
    config_json: str
    start_time: float
    pid: int
    host: str
    run_dir: str
    offline: bool
    resume: str
    def __init__(self, ref: _Optional[_Union[RunRef, _Mapping]] = ..., name: _Optional[str] = ..., notes: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., group: _Optional[str] = ..., job_type: _Optional[str] = ..., config_json: _Optional[str] = ..., start_time: _Optional[float] = ..., pid: _Optional[int] = ..., host: _Optional[str] = ..., run_dir: _Optional[str] = ..., offline: _Optional[bool] = ..., resume: _Optional[str] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("key", "type", "steps", "values", "json_values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    JSON_VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    type: ColumnType
    steps: bytes
    values: bytes
    json_values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., type: _Optional[_Union[ColumnType, str]] = ..., steps: _Optional[bytes] = ..., values: _Optional[bytes] = ..., json_values: _Optional[_Iterable[str]] = ...) -> None: ...

class HistoryBatch(_message.Message):
    __slots__ = ("steps", "timestamps", "columns")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    steps: bytes
    timestamps: bytes
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(self, steps: _Optional[bytes] = ..., timestamps: _Optional[bytes] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ...) -> None: ...

class ConfigUpdate(_message.Message):
    __slots__ = ("items_json",)
    ITEMS_JSON_FIELD_NUMBER: _ClassVar[int]
    items_json: str
    def __init__(self, items_json: _Optional[str] = ...) -> None: ...

class SummaryUpdate(_message.Message):
    __slots__ = ("items_json", "removed")
    ITEMS_JSON_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    items_json: str
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items_json: _Optional[str] = ..., removed: _Optional[_Iterable[str]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class RunUpdate(_message.Message):
    __slots__ = ("name", "notes", "tags", "group", "job_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    notes: str
    tags: StringList
    group: str
    job_type: str
    def __init__(self, name: _Optional[str] = ..., notes: _Optional[str] = ..., tags: _Optional[_Union[StringList, _Mapping]] = ..., group: _Optional[str] = ..., job_type: _Optional[str] = ...) -> None: ...

class Finish(_message.Message):
    __slots__ = ("state", "exit_code", "end_time", "reason")
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    state: RunState
    exit_code: int
    end_time: float
    reason: str
    def __init__(self, state: _Optional[_Union[RunState, str]] = ..., exit_code: _Optional[int] = ..., end_time: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("start", "history", "config", "summary", "update", "finish")
    START_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    start: RunStart
    history: bytes
    config: ConfigUpdate
    summary: SummaryUpdate
    update: RunUpdate
    finish: Finish
    def __init__(self, start: _Optional[_Union[RunStart, _Mapping]] = ..., history: _Optional[bytes] = ..., config: _Optional[_Union[ConfigUpdate, _Mapping]] = ..., summary: _Optional[_Union[SummaryUpdate, _Mapping]] = ..., update: _Optional[_Union[RunUpdate, _Mapping]] = ..., finish: _Optional[_Union[Finish, _Mapping]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("seq", "record")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    seq: int
    record: bytes
    def __init__(self, seq: _Optional[int] = ..., record: _Optional[bytes] = ...) -> None: ...
