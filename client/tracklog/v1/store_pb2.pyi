from tracklog.v1 import records_pb2 as _records_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestRequest(_message.Message):
    __slots__ = ("ref", "frames")
    REF_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    ref: _records_pb2.RunRef
    frames: _containers.RepeatedCompositeFieldContainer[_records_pb2.Frame]
    def __init__(self, ref: _Optional[_Union[_records_pb2.RunRef, _Mapping]] = ..., frames: _Optional[_Iterable[_Union[_records_pb2.Frame, _Mapping]]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("accepted", "applied_through")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    applied_through: int
    def __init__(self, accepted: _Optional[bool] = ..., applied_through: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[_records_pb2.RunRef]
    def __init__(self, runs: _Optional[_Iterable[_Union[_records_pb2.RunRef, _Mapping]]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("stop",)
    STOP_FIELD_NUMBER: _ClassVar[int]
    stop: _containers.RepeatedCompositeFieldContainer[_records_pb2.RunRef]
    def __init__(self, stop: _Optional[_Iterable[_Union[_records_pb2.RunRef, _Mapping]]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _records_pb2.RunRef
    def __init__(self, ref: _Optional[_Union[_records_pb2.RunRef, _Mapping]] = ...) -> None: ...

class MetricSummary(_message.Message):
    __slots__ = ("key", "last", "min", "max", "last_step")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    key: str
    last: float
    min: float
    max: float
    last_step: int
    def __init__(self, key: _Optional[str] = ..., last: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., last_step: _Optional[int] = ...) -> None: ...

class RunView(_message.Message):
    __slots__ = ("ref", "name", "notes", "tags", "group", "job_type", "state", "exit_code", "config_json", "summary_json", "metrics", "created_at", "heartbeat_at", "finished_at", "history_rows", "last_step", "metadata_json", "host", "run_dir", "last_seq")
    REF_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_ROWS_FIELD_NUMBER: _ClassVar[int]
    LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    RUN_DIR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    ref: _records_pb2.RunRef
    name: str
    notes: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    group: str
    job_type: str
    state: _records_pb2.RunState
    exit_code: int
    config_json: str
    summary_json: str
    metrics: _containers.RepeatedCompositeFieldContainer[MetricSummary]
    created_at: float
    heartbeat_at: float
    finished_at: float
    history_rows: int
    last_step: int
    metadata_json: str
    host: str
    run_dir: str
    last_seq: int
    def __init__(self, ref: _Optional[_Union[_records_pb2.RunRef, _Mapping]] = ..., name: _Optional[str] = ..., notes: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., group: _Optional[str] = ..., job_type: _Optional[str] = ..., state: _Optional[_Union[_records_pb2.RunState, str]] = ..., exit_code: _Optional[int] = ..., config_json: _Optional[str] = ..., summary_json: _Optional[str] = ..., metrics: _Optional[_Iterable[_Union[MetricSummary, _Mapping]]] = ..., created_at: _Optional[float] = ..., heartbeat_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., history_rows: _Optional[int] = ..., last_step: _Optional[int] = ..., metadata_json: _Optional[str] = ..., host: _Optional[str] = ..., run_dir: _Optional[str] = ..., last_seq: _Optional[int] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("entity", "project", "filters_json", "order", "limit", "page_token")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    FILTERS_JSON_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entity: str
    project: str
    filters_json: str
    order: str
    limit: int
    page_token: str
    def __init__(self, entity: _Optional[str] = ..., project: _Optional[str] = ..., filters_json: _Optional[str] = ..., order: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunView]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[RunView, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("ref", "keys", "samples", "min_step", "max_step", "page_rows")
    REF_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MIN_STEP_FIELD_NUMBER: _ClassVar[int]
    MAX_STEP_FIELD_NUMBER: _ClassVar[int]
    PAGE_ROWS_FIELD_NUMBER: _ClassVar[int]
    ref: _records_pb2.RunRef
    keys: _containers.RepeatedScalarFieldContainer[str]
    samples: int
    min_step: int
    max_step: int
    page_rows: int
    def __init__(self, ref: _Optional[_Union[_records_pb2.RunRef, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ..., samples: _Optional[int] = ..., min_step: _Optional[int] = ..., max_step: _Optional[int] = ..., page_rows: _Optional[int] = ...) -> None: ...

class ServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfoResponse(_message.Message):
    __slots__ = ("version", "http_url", "heartbeat_timeout")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HTTP_URL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    version: str
    http_url: str
    heartbeat_timeout: float
    def __init__(self, version: _Optional[str] = ..., http_url: _Optional[str] = ..., heartbeat_timeout: _Optional[float] = ...) -> None: ...
