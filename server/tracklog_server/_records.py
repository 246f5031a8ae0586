"""Decoding and validating ingested frames, before any database work.

Everything that can make a record invalid is found here, before the store writes anything. A record
that breaks a rule becomes a :class:`RefusedOp` in its place: it costs that record (its seq still
counts, and the run notes the problem), never its batch or its run. Only a request that breaks the
protocol itself (seqs that are not consecutive) is refused whole, with :class:`InvalidInputError`.
History columns are kept as they came (packed bytes); the only per-value work is done by
C-implemented builtins over ``array`` objects: an ascending check of the row steps, ``min``/``max`` for
the metric summary, and one ``json.loads`` per JSON value (JSON columns are rare: strings, lists,
media references).
"""

from __future__ import annotations

import json
import math
import operator
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import filterfalse, islice
from typing import Any

from google.protobuf.message import DecodeError

from tracklog._history import FLOAT, INT, JSON, pack_float64, pack_int64, unpack_float64, unpack_int64
from tracklog._refs import validate_part
from tracklog._rules import step_problem
from tracklog._spool import history_rows
from tracklog.v1 import records_pb2

from . import _run_states as _states
from ._capture_records import CaptureOp, decode_capture
from ._entities import RunKey, RunState
from ._errors import InvalidInputError
from ._limits import MAX_LONG_TEXT, MAX_RECORD_BYTES, MAX_TAGS
from ._validate import check_history_key, check_text, check_write_time, loads_object

_FINISH_STATES = {
    records_pb2.RUN_STATE_FINISHED: RunState.FINISHED,
    records_pb2.RUN_STATE_FAILED: RunState.FAILED,
    records_pb2.RUN_STATE_KILLED: RunState.KILLED,
    records_pb2.RUN_STATE_CRASHED: RunState.CRASHED,
}


def run_key(ref: records_pb2.RunRef) -> RunKey:
    try:
        return RunKey(
            validate_part("entity", ref.entity),
            validate_part("project", ref.project),
            validate_part("id", ref.id),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(str(exc)) from exc


def _tags(values: Sequence[str]) -> tuple[str, ...]:
    if len(values) > MAX_TAGS:
        raise InvalidInputError(f"{len(values)} tags; the limit is {MAX_TAGS}")
    for tag in values:
        check_text(tag, "a tag")
    return tuple(values)


@dataclass(frozen=True, slots=True)
class StartOp:
    key: RunKey
    name: str
    notes: str
    tags: tuple[str, ...]
    group: str
    job_type: str
    config: dict[str, Any]
    start_time: float
    pid: int
    host: str
    run_dir: str
    offline: bool
    resume: str
    name_generated: bool = False


@dataclass(frozen=True, slots=True)
class ColumnChunk:
    """One column of a batch, ready to store, with what the metric summary needs from it."""

    key: str
    type: int
    steps: array[int]
    steps_bytes: bytes  # as stored: the column's own steps, or the batch's for an all_rows column
    values_bytes: bytes  # float64 LE as it came, or a serialized StringList (JSON)
    num_values: array[float] | None  # numeric columns
    json_values: Sequence[str] | None  # JSON columns
    num_last: float  # numeric: the value at max_step
    num_min: float | None  # None when every value is NaN (or JSON)
    num_max: float | None

    @property
    def n(self) -> int:
        return len(self.steps)

    @property
    def min_step(self) -> int:
        return self.steps[0]

    @property
    def max_step(self) -> int:
        return self.steps[-1]

    @property
    def last_json(self) -> str | None:
        return self.json_values[-1] if self.json_values is not None else None


@dataclass(frozen=True, slots=True)
class HistoryOp:
    steps: array[int]  # strictly ascending, >= 0, at least one row
    steps_bytes: bytes
    times_bytes: bytes
    columns: tuple[ColumnChunk, ...]

    @property
    def last_step(self) -> int:
        return self.steps[-1]

    def after(self, step: int) -> HistoryOp | None:
        """The rows with a step above ``step`` (rows at or below it were already stored), or None.

        Only a resumed run re-sending old steps gets here; the copying is fine on this rare path.
        """
        if self.steps[0] > step:
            return self
        cut = bisect_right(self.steps, step)
        if cut == len(self.steps):
            return None
        times = unpack_float64(self.times_bytes)[cut:]
        columns = []
        for col in self.columns:
            i = bisect_right(col.steps, step)
            if i < col.n:
                columns.append(_cut_column(col, i))
        steps = self.steps[cut:]
        return HistoryOp(steps, pack_int64(steps), pack_float64(times), tuple(columns))


@dataclass(frozen=True, slots=True)
class ConfigOp:
    items: dict[str, Any]
    write_time: float = 0.0  # the writer's clock (0: unknown); see storage._field_times


@dataclass(frozen=True, slots=True)
class SummaryOp:
    items: dict[str, Any]
    removed: tuple[str, ...]
    write_time: float = 0.0


@dataclass(frozen=True, slots=True)
class UpdateOp:
    name: str | None
    notes: str | None
    tags: tuple[str, ...] | None
    group: str | None
    job_type: str | None
    write_time: float = 0.0


@dataclass(frozen=True, slots=True)
class FinishOp:
    state: RunState
    exit_code: int
    end_time: float
    reason: str


@dataclass(frozen=True, slots=True)
class LostOp:
    """Frames a reader could not read from a damaged spool (``FramesLost``), reported at the first
    lost seq: the store notes the loss and continues the run's seq after ``last_seq``."""

    first_seq: int
    last_seq: int
    rows: int
    problem: str


@dataclass(frozen=True, slots=True)
class DroppedOp:
    """Records the training process could not keep (``RecordsDropped``): noted, as a loss."""

    rows: int
    problem: str


@dataclass(frozen=True, slots=True)
class RefusedOp:
    """A record the store refuses, in its place: applying it notes the problem on the run."""

    reason: str
    rows: int  # history rows it held, as far as it can be read (0 for other kinds)


@dataclass(frozen=True, slots=True)
class EmptyOp:
    """A record that changes nothing (a history or system batch without rows); its seq still counts."""


Op = (
    StartOp
    | HistoryOp
    | ConfigOp
    | SummaryOp
    | UpdateOp
    | FinishOp
    | EmptyOp
    | RefusedOp
    | CaptureOp
    | LostOp
    | DroppedOp
)
_CAPTURE_KINDS = frozenset({"system", "metadata", "output", "file", "timing"})


def decode_frames(key: RunKey, frames: Sequence[tuple[int, bytes]]) -> list[tuple[int, Op]]:
    """Decodes ``(seq, serialized Record)`` pairs; seqs must be consecutive and start at 1 or more
    (else InvalidInputError; a FramesLost at seq s covering s..t is followed by t + 1). A record that
    cannot be decoded or breaks a rule becomes a RefusedOp."""
    run_key(records_pb2.RunRef(entity=key.entity, project=key.project, id=key.id))  # or the whole request
    out: list[tuple[int, Op]] = []
    previous = 0
    for seq, payload in frames:
        check_seq(seq, previous)
        try:
            op = decode_record(key, payload)
            if isinstance(op, LostOp) and op.first_seq != seq:
                raise InvalidInputError(f"FramesLost from seq {op.first_seq} must be sent at that seq")
        except InvalidInputError as exc:
            op = RefusedOp(str(exc), history_rows(payload))
        out.append((seq, op))
        previous = through(seq, op)
    return out


def check_seq(seq: int, previous: int) -> None:
    """A request's frames: seqs from 1 up, each following the last seq the one before accounts for
    (``previous``, 0 for the first). Raises InvalidInputError, refusing the whole request."""
    if seq < 1:
        raise InvalidInputError("frame seq must be 1 or more")
    if previous and seq != previous + 1:
        raise InvalidInputError(f"frame seqs must be consecutive; {seq} follows {previous}")


def through(seq: int, op: Op) -> int:
    """The last seq that the op at ``seq`` accounts for (more than one for lost frames)."""
    return op.last_seq if isinstance(op, LostOp) else seq


def refused(op: Op, reason: str) -> RefusedOp:
    """``op`` refused after decoding (the database or the stored state refused it)."""
    return RefusedOp(reason, len(op.steps) if isinstance(op, HistoryOp) else 0)


def decode_record(key: RunKey, payload: bytes) -> Op:
    if len(payload) > MAX_RECORD_BYTES:
        raise InvalidInputError(f"record is {len(payload)} bytes; the limit is {MAX_RECORD_BYTES}")
    try:
        record = records_pb2.Record.FromString(payload)
    except DecodeError as exc:
        raise InvalidInputError("record is not a valid tracklog.v1.Record") from exc
    kind = record.WhichOneof("kind")
    if kind == "history":
        return decode_history(record.history)
    if kind == "start":
        return _decode_start(key, record.start)
    if kind == "config":
        config = record.config
        return ConfigOp(loads_object(config.items_json, "config"), check_write_time(config.write_time))
    if kind == "summary":
        summary = record.summary
        removed = tuple(check_text(k, "a removed summary key") for k in summary.removed)
        items = loads_object(summary.items_json, "summary")
        return SummaryOp(items, removed, check_write_time(summary.write_time))
    if kind == "update":
        return _decode_update(record.update)
    if kind == "finish":
        return _decode_finish(record.finish)
    if kind in _CAPTURE_KINDS:
        op = decode_capture(record, kind)
        return EmptyOp() if op is None else op
    if kind == "lost":
        return decode_lost(record.lost)
    if kind == "dropped":
        return _decode_dropped(record.dropped)
    raise InvalidInputError("record has no content (unknown or missing kind)")


def _decode_start(key: RunKey, start: records_pb2.RunStart) -> StartOp:
    if run_key(start.ref) != key:
        raise InvalidInputError(f"RunStart is for run {run_key(start.ref)}, the request for {key}")
    if start.resume not in ("", "allow", "must", "never"):
        raise InvalidInputError(f"unknown resume mode {start.resume!r}")
    if not math.isfinite(start.start_time) or start.start_time < 0:
        raise InvalidInputError("start_time must be a finite, non-negative unix time")
    return StartOp(
        key=key,
        name=check_text(start.name, "name"),
        notes=check_text(start.notes, "notes", MAX_LONG_TEXT),
        tags=_tags(start.tags),
        group=check_text(start.group, "group"),
        job_type=check_text(start.job_type, "job_type"),
        config=loads_object(start.config_json, "config"),
        start_time=start.start_time,
        pid=start.pid,
        host=check_text(start.host, "host", MAX_LONG_TEXT),
        run_dir=check_text(start.run_dir, "run_dir", MAX_LONG_TEXT),
        offline=start.offline,
        resume=start.resume,
        name_generated=start.name_generated,
    )


def decode_lost(lost: records_pb2.FramesLost) -> LostOp:
    file = check_text(lost.file, "the file of lost frames")
    reason = check_text(lost.reason, "the reason frames were lost")
    if lost.first_seq < 1 or lost.last_seq < lost.first_seq:
        raise InvalidInputError(f"lost frames {lost.first_seq}-{lost.last_seq} are not a range of seqs")
    count = lost.last_seq - lost.first_seq + 1
    span = f"frame {lost.first_seq}" if count == 1 else f"frames {lost.first_seq}-{lost.last_seq}"
    if lost.rows_known:
        rows = f"{lost.rows:,} history rows"
    else:
        rows = f"at least {lost.rows:,} history rows" if lost.rows else "an unknown number of history rows"
    problem = f"{span} of {file} lost to damage on disk ({rows}, {lost.bytes:,} bytes): {reason}"
    return LostOp(lost.first_seq, lost.last_seq, lost.rows, problem)


def _decode_dropped(dropped: records_pb2.RecordsDropped) -> DroppedOp:
    reason = check_text(dropped.reason, "the reason records were dropped")
    problem = (
        f"the training process dropped {dropped.rows:,} history rows and {dropped.records:,} other "
        f"records: {reason}"
    )
    return DroppedOp(dropped.rows, problem)


def _decode_update(update: records_pb2.RunUpdate) -> UpdateOp:
    return UpdateOp(
        name=check_text(update.name, "name") if update.HasField("name") else None,
        notes=check_text(update.notes, "notes", MAX_LONG_TEXT) if update.HasField("notes") else None,
        tags=_tags(update.tags.values) if update.HasField("tags") else None,
        group=check_text(update.group, "group") if update.HasField("group") else None,
        job_type=check_text(update.job_type, "job_type") if update.HasField("job_type") else None,
        write_time=check_write_time(update.write_time),
    )


def _decode_finish(finish: records_pb2.Finish) -> FinishOp:
    named = None
    if finish.state != records_pb2.RUN_STATE_UNSPECIFIED:
        named = _FINISH_STATES.get(finish.state)
        if named is None:
            raise InvalidInputError(f"a run cannot finish in state {finish.state}")
    state = _states.finish(named, finish.exit_code)
    if not math.isfinite(finish.end_time) or finish.end_time < 0:
        raise InvalidInputError("end_time must be a finite, non-negative unix time")
    return FinishOp(
        state, finish.exit_code, finish.end_time, check_text(finish.reason, "reason", MAX_LONG_TEXT)
    )


def _packed(data: bytes, what: str) -> int:
    if len(data) % 8:
        raise InvalidInputError(f"{what} is {len(data)} bytes, not a multiple of 8")
    return len(data) // 8


def _ascending(steps: array[int]) -> bool:
    return all(map(operator.lt, steps, islice(steps, 1, None)))


def decode_history(data: bytes) -> HistoryOp | EmptyOp:
    """A HistoryBatch as chunks to store. A batch without rows changes nothing."""
    try:
        batch = records_pb2.HistoryBatch.FromString(data)
    except DecodeError as exc:
        raise InvalidInputError("history is not a valid tracklog.v1.HistoryBatch") from exc
    n = _packed(batch.steps, "history steps")
    if _packed(batch.timestamps, "history timestamps") != n:
        raise InvalidInputError("history has a different number of steps and timestamps")
    if n == 0:
        if batch.columns:
            raise InvalidInputError("history has columns but no rows")
        return EmptyOp()
    steps = unpack_int64(batch.steps)
    if steps[0] < 0 or not _ascending(steps):
        raise InvalidInputError("history steps must be non-negative and strictly ascending")
    problem = step_problem(steps[-1])
    if problem is not None:
        raise InvalidInputError(f"history step {problem}")
    row_set: set[int] | None = None  # built only if a column does not cover every row
    columns: list[ColumnChunk] = []
    for column in batch.columns:
        key = check_history_key(column.key)
        if column.all_rows:
            if column.steps:
                raise InvalidInputError(f"column {key!r} is marked all_rows but has steps of its own")
            columns.append(_decode_column(column, steps, batch.steps))
            continue
        if not _packed(column.steps, f"steps of {key!r}"):
            continue
        if column.steps == batch.steps:
            col_steps = steps  # the common case: the key has a value in every row
        else:
            col_steps = unpack_int64(column.steps)
            if not _ascending(col_steps):
                raise InvalidInputError(f"steps of {key!r} are not strictly ascending")
            if row_set is None:
                row_set = set(steps)
            if not row_set.issuperset(col_steps):
                raise InvalidInputError(f"steps of {key!r} are not rows of the batch")
        columns.append(_decode_column(column, col_steps, column.steps))
    if len({col.key for col in columns}) != len(columns):
        _check_disjoint(columns)
    return HistoryOp(steps, batch.steps, batch.timestamps, tuple(columns))


def _check_disjoint(columns: Sequence[ColumnChunk]) -> None:
    """A key may have two columns in a batch (its values changed type) but one value per step."""
    seen: dict[str, set[int]] = {}
    for col in columns:
        steps = seen.setdefault(col.key, set())
        if not steps.isdisjoint(col.steps):
            raise InvalidInputError(f"two columns of {col.key!r} have values at the same step")
        steps.update(col.steps)


def _decode_column(column: records_pb2.Column, steps: array[int], steps_bytes: bytes) -> ColumnChunk:
    """``steps``/``steps_bytes``: the column's steps, unpacked and as stored (its own, or the
    batch's for an ``all_rows`` column)."""
    key = column.key
    if column.type in (FLOAT, INT):
        if column.json_values or _packed(column.values, f"values of {key!r}") != len(steps):
            raise InvalidInputError(f"column {key!r} needs one float64 value per step")
        values = unpack_float64(column.values)
        return _numeric_chunk(key, column.type, steps, steps_bytes, column.values, values)
    if column.type == JSON:
        if column.values or len(column.json_values) != len(steps):
            raise InvalidInputError(f"column {key!r} needs one JSON text per step")
        texts = list(column.json_values)
        try:
            # One C-level call per value; JSON columns are the rare, non-scalar ones.
            for _ in map(json.loads, texts):
                pass
        except (ValueError, RecursionError) as exc:
            raise InvalidInputError(f"column {key!r} holds a value that is not JSON") from exc
        packed = records_pb2.StringList(values=texts).SerializeToString()
        return ColumnChunk(key, JSON, steps, steps_bytes, packed, None, texts, math.nan, None, None)
    raise InvalidInputError(f"column {key!r} has unknown type {column.type}")


def _numeric_chunk(
    key: str, type_: int, steps: array[int], steps_bytes: bytes, values_bytes: bytes, values: array[float]
) -> ColumnChunk:
    # min()/max() skip a NaN anywhere but in first place (comparisons with NaN are false, so NaN
    # never replaces the running extreme); only when the first value is NaN do we filter explicitly.
    if math.isnan(values[0]):
        finite = list(filterfalse(math.isnan, values))
        lo, hi = (min(finite), max(finite)) if finite else (None, None)
    else:
        lo, hi = min(values), max(values)
    return ColumnChunk(key, type_, steps, steps_bytes, values_bytes, values, None, values[-1], lo, hi)


def _cut_column(col: ColumnChunk, start: int) -> ColumnChunk:
    steps = col.steps[start:]
    if col.num_values is not None:
        values = col.num_values[start:]
        return _numeric_chunk(col.key, col.type, steps, pack_int64(steps), pack_float64(values), values)
    assert col.json_values is not None
    texts = list(col.json_values[start:])
    packed = records_pb2.StringList(values=texts).SerializeToString()
    return replace(col, steps=steps, steps_bytes=pack_int64(steps), values_bytes=packed, json_values=texts)
