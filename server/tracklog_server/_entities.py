"""Plain, immutable values returned by the store: no ORM objects ever leave the store layer.

JSON documents (config, summary, metadata) travel as JSON text: Python's ``json`` with NaN and
Infinity allowed, exactly as the records carry them, so nothing is decoded that a caller does not need.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field
from typing import Any

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # Python 3.10: the same behaviour, members compare, print and format as their text

    class StrEnum(str, enum.Enum):
        def __str__(self) -> str:
            return str(self.value)


class RunState(StrEnum):
    """A run's state as stored (the text in ``runs.state``)."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    KILLED = "killed"
    CRASHED = "crashed"


class OutputStream(StrEnum):
    """Where a console line was written."""

    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True, slots=True)
class RunKey:
    """``entity/project/id`` of a run, already validated."""

    entity: str
    project: str
    id: str

    def __str__(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """Summary of one numeric history key. ``min``/``max`` ignore NaN and are NaN when every value
    was NaN; ``last`` is the value at ``last_step`` (may be NaN or +-Inf)."""

    key: str
    last: float
    min: float
    max: float
    last_step: int


@dataclass(frozen=True, slots=True)
class RunIdentity:
    """What decides whether a new start may use a run's id (``_run_identity``)."""

    writer_hash: str  # sha256 of the writer token of the run's current incarnation ("" : any writer)
    state: RunState
    finished: bool
    deleted: bool
    last_step: int
    name: str
    config_json: str


@dataclass(frozen=True, slots=True)
class Run:
    key: RunKey
    name: str
    notes: str
    tags: tuple[str, ...]
    group: str
    job_type: str
    state: RunState
    exit_code: int
    config_json: str
    summary_json: str  # last logged value per key, overridden by explicit summary values
    metrics: tuple[MetricSummary, ...]  # numeric keys, sorted by key
    created_at: float  # unix seconds
    heartbeat_at: float
    finished_at: float  # 0.0 while not finished
    history_rows: int
    last_step: int  # -1 when no rows
    metadata_json: str
    host: str
    run_dir: str
    last_seq: int
    runtime: float  # seconds from start to end (or to the latest news while running)
    tracked_seconds: float  # runtime minus time suspended or asleep
    output_lines: int  # console lines stored
    rows_lost: int = 0  # history rows known lost (damaged spool, memory cap, refused records)
    problems: tuple[str, ...] = ()  # what was lost or refused and why, oldest first
    daemon_seq: int = 0  # the last frame applied from the daemon's own sequence


@dataclass(frozen=True, slots=True)
class ProjectSummary:
    """A project with runs: how many (not deleted) and when the latest started (unix seconds)."""

    entity: str
    project: str
    run_count: int
    last_run_at: float


@dataclass(frozen=True, slots=True)
class RefusedRecord:
    """A frame the store refused (the rest of its batch was applied): its seq counts as applied."""

    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class IngestResult:
    """``accepted`` is False when the frames do not continue what the store holds (nothing was
    applied); the sender resends from ``applied_through + 1``. ``refused``: frames of this request
    that the store refused, each costing only itself (also noted in the run's problems)."""

    accepted: bool
    applied_through: int
    refused: tuple[RefusedRecord, ...] = ()
    stop_requested: bool = False  # a stop of the run was asked for (through the API) and is pending


@dataclass(frozen=True, slots=True)
class ColumnSlice:
    """One key's values on some rows of a history page, in the wire encoding of
    ``tracklog.v1.Column``: ``steps`` int64 LE; ``values`` float64 LE for numeric types, else
    ``json_values`` one JSON text per step."""

    key: str
    type: int  # tracklog.v1.ColumnType
    steps: bytes
    values: bytes
    json_values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Complete rows in ascending step order: one step and timestamp per row, and the requested
    keys' values restricted to these rows."""

    steps: bytes
    timestamps: bytes
    columns: tuple[ColumnSlice, ...]


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    keys: tuple[str, ...] = ()  # empty: every key
    samples: int = 0  # 0: every row; else at most this many, evenly spaced, first and last kept
    min_step: int = 0  # inclusive
    max_step: int | None = None  # exclusive; None: no upper bound
    page_rows: int = 0  # 0: the store's default


@dataclass(frozen=True, slots=True)
class RunFilter:
    entity: str = ""  # empty: every entity
    project: str = ""  # empty: every project
    state: RunState | None = None
    order: str = "-created_at"  # "created_at", "-created_at", "name", "-name"
    limit: int = 0  # 0: no limit
    offset: int = 0


@dataclass(frozen=True, slots=True)
class RunChanges:
    """An edit of a run through the API (already validated); None or empty changes nothing."""

    name: str | None = None
    notes: str | None = None
    group: str | None = None
    job_type: str | None = None
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)  # items to set
    config_removed: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)  # explicit summary items to set
    summary_removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SystemQuery:
    keys: tuple[str, ...] = ()  # empty: every system metric key
    samples: int = 0  # 0: every row; else at most this many, evenly spaced, first and last kept


@dataclass(frozen=True, slots=True)
class SystemSeriesSlice:
    """One system metric's values on the rows of a page: float64 LE, NaN where not measured."""

    key: str
    values: bytes


@dataclass(frozen=True, slots=True)
class SystemPage:
    """Rows of system metrics in ascending time: float64 LE unix ``timestamps`` and, for each key,
    one value per row (the wire encoding of ``tracklog.v1.SystemBatch``)."""

    timestamps: bytes
    series: tuple[SystemSeriesSlice, ...]


@dataclass(frozen=True, slots=True)
class SystemSnapshot:
    """The latest row of system metrics: its time and each key's value (NaN: not measured)."""

    time: float
    values: tuple[tuple[str, float], ...]  # sorted by key


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One console line, without its terminator."""

    time: float  # unix seconds
    stream: OutputStream
    text: str


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One version of a file saved with a run. ``size`` is the bytes stored once complete (before,
    the size the sender announced); ``sha256`` is empty until complete."""

    name: str
    version: int
    size: int
    sha256: str
    updated_at: float  # unix seconds of the last chunk received
    complete: bool


@dataclass(frozen=True, slots=True)
class ProjectKey:
    """``entity/project``, already validated."""

    entity: str
    project: str

    def __str__(self) -> str:
        return f"{self.entity}/{self.project}"


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of a search: ``runs`` in order, ``next_cursor`` ("" on the last page) and how many
    runs match in all."""

    runs: tuple[Run, ...]
    next_cursor: str
    total: int


@dataclass(frozen=True, slots=True)
class GroupMetric:
    """A numeric summary key over a group's runs that have it as a number (NaN left out)."""

    key: str
    count: int
    min: float
    mean: float
    max: float


@dataclass(frozen=True, slots=True)
class RunGroup:
    """The runs sharing one value of the grouping key. ``type`` is how that value is stored
    (``_filter_ast.ValueType``), "" for the group of runs without the key (``value`` None)."""

    value: Any
    type: str
    count: int
    metrics: tuple[GroupMetric, ...]  # sorted by key


@dataclass(frozen=True, slots=True)
class KeyDescription:
    """One config or summary key of a project: how many runs have it, as which types, and the range
    of its numeric values (None when it has none)."""

    kind: str  # "config" or "summary"
    key: str
    count: int
    types: tuple[tuple[str, int], ...]  # (type, runs), most common first
    min: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class ProjectDescription:
    project: ProjectKey
    runs: int
    keys: tuple[KeyDescription, ...]  # config keys, then summary keys, each sorted
