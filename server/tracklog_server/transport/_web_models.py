"""The web API's request and response bodies, as pydantic models: they validate requests and give the
OpenAPI document its schemas (``/api/v1/openapi.json``).

Numbers that may be NaN or infinite (a summary's min, a runtime) are ``float | str``: JSON has no such
numbers, so they travel as "NaN", "Infinity", "-Infinity" (see ``_web_json``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tracklog_server._limits import MAX_LONG_TEXT, MAX_SHORT_TEXT, MAX_TAGS

Number = float | str


class ErrorBody(BaseModel):
    error: str


class ProjectOut(BaseModel):
    entity: str
    project: str
    run_count: int
    last_run_at: str | None


class ProjectList(BaseModel):
    projects: list[ProjectOut]


class KeyInfo(BaseModel):
    key: str
    type: Literal["number", "string", "bool", "other"]
    min: Number | None = None
    max: Number | None = None
    values: list[str] = Field(default_factory=list)


class ProjectDescription(BaseModel):
    entity: str
    project: str
    run_count: int
    config_keys: list[KeyInfo]
    summary_keys: list[KeyInfo]
    metric_keys: list[str]
    system_keys: list[str]


class MetricOut(BaseModel):
    key: str
    last: Number
    min: Number
    max: Number
    last_step: int


class RunOut(BaseModel):
    entity: str
    project: str
    id: str
    name: str
    state: Literal["running", "finished", "failed", "killed", "crashed"]
    created_at: str | None
    heartbeat_at: str | None
    ended_at: str | None
    runtime: Number
    tracked_hours: Number
    user: str
    host: str
    tags: list[str]
    notes: str
    group: str
    job_type: str
    exit_code: int
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[MetricOut]
    metadata: dict[str, Any]
    rows: int
    last_step: int
    rows_lost: int
    problems: list[str]
    output_lines: int
    url: str


class RunPageOut(BaseModel):
    runs: list[RunOut]
    next_cursor: str | None
    total: int


class GroupSummary(BaseModel):
    min: Number | None
    mean: Number | None
    max: Number | None


class GroupOut(BaseModel):
    value: Any
    count: int
    summary: dict[str, GroupSummary]


class GroupList(BaseModel):
    groups: list[GroupOut]


class RunEdit(BaseModel):
    """PATCH body: each field given is set; ``tags`` is the run's new set of tags."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=MAX_SHORT_TEXT)
    notes: str | None = Field(default=None, max_length=MAX_LONG_TEXT)
    tags: list[str] | None = Field(default=None, max_length=MAX_TAGS)
    group: str | None = Field(default=None, max_length=MAX_SHORT_TEXT)
    job_type: str | None = Field(default=None, max_length=MAX_SHORT_TEXT)


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=1000)
    action: Literal["tag", "untag", "group", "delete"]
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    group: str | None = Field(default=None, max_length=MAX_SHORT_TEXT)
    delete_files: bool = False


class Changed(BaseModel):
    changed: int


class Deleted(BaseModel):
    deleted: int


class SeriesOut(BaseModel):
    x: list[float]
    y: list[float | None]
    exact: bool


class ChartOut(BaseModel):
    x_key: str
    series: dict[str, SeriesOut]


class LogLine(BaseModel):
    n: int
    stream: Literal["stdout", "stderr"]
    text: str
    time: str | None


class LogPage(BaseModel):
    lines: list[LogLine]
    total: int


class FileOut(BaseModel):
    name: str
    size: int
    updated_at: str | None
    text: bool
    complete: bool
    version: int
    sha256: str


class FileList(BaseModel):
    files: list[FileOut]
