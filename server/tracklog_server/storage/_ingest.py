"""Applying decoded frames to the database, inside the caller's transaction (a Core connection).

Invariants:

* The caller holds the run row's lock (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on
  SQLite) for the whole transaction, so ``last_seq`` cannot move underneath us: a frame is applied at
  most once, in seq order, and a batch is applied wholly or not at all.
* Whatever the number of frames and rows, one ingest issues a bounded number of statements: the run
  row's SELECT ... FOR UPDATE and one UPDATE (for a new run an INSERT, then the UPDATE), one bulk
  INSERT of all history chunks of all frames, one SELECT, one bulk INSERT and one bulk UPDATE of the
  metric summaries, and for automatic capture at most six more (see ``_capture_ingest``): at most 12
  for a run the store knows, 13 for a new one; plus what keeps ``run_values`` in step
  (``_values.sync``): one UPDATE for a history batch (the summary values that moved), and up to a
  DELETE, an INSERT and an UPDATE per kind whose document changed (config, summary, tags, user).
  (PostgreSQL's driver may send one bulk INSERT as several multi-row statements of up to 1000 rows
  each.)
  Statements are prebuilt at import so their compiled form is cached.
* Metadata merges into the run's metadata by top-level key; the latest Timing wins.
* A run's frames come only from its writer: ``runs.writer_hash`` is the sha256 of the writer token of
  the ingest that created the run, and an ingest with another token is refused whole. The check
  reads the locked run row, so it adds no statement. A run with an empty hash (created before writer
  tokens, or by a sender without one) accepts any writer.
* Steps grow across batches: rows at or below the run's ``last_step`` (a resumed run re-sending old
  steps) are dropped, as the SDK drops a ``log(step=s)`` below the current step.
* A refused record (``RefusedOp``) counts as applied: its seq moves ``last_seq`` on, and the run notes
  the problem (with the history rows it held). A refused RunStart at seq 1 still creates the run, with
  default settings, so that the rest of the run is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Sequence
from copy import copy
from dataclasses import dataclass, field, fields
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from tracklog._history import FLOAT, dumps
from tracklog_server import _run_identity as _identity
from tracklog_server import _run_states as _states
from tracklog_server._capture_records import FileOp, MetadataOp, OutputOp, SystemOp, TimingOp
from tracklog_server._entities import IngestResult, RefusedRecord, RunIdentity, RunKey, RunState
from tracklog_server._errors import InvalidInputError, PermissionDeniedError
from tracklog_server._limits import MAX_PROBLEMS, MAX_SHORT_TEXT, MAX_WRITER_TOKEN
from tracklog_server._records import (
    ColumnChunk,
    ConfigOp,
    DroppedOp,
    EmptyOp,
    FinishOp,
    HistoryOp,
    LostOp,
    Op,
    RefusedOp,
    StartOp,
    SummaryOp,
    UpdateOp,
    through,
)

from . import _values as _run_values
from ._capture_ingest import CaptureWriter
from ._field_times import Edit, apply_edit, dumps_doc, write_time
from ._models import TIMESTAMP_KEY, HistoryChunkRow, MetricSummaryRow, RunRow


@dataclass(slots=True)
class LockedRun:
    """The locked run row as plain values (Core, not ORM: ingest is the hot path). Fields changed by the
    ops are written back with one UPDATE by :meth:`save`."""

    pk: int
    run_id: str
    name: str
    notes: str
    tags: list[str]
    group: str
    job_type: str
    state: str
    exit_code: int
    finish_reason: str
    heartbeat_at: float
    finished_at: float | None
    config_json: str
    summary_json: str
    summary_removed: list[str]
    metadata_json: str
    host: str
    run_dir: str
    last_seq: int
    history_rows: int
    last_step: int
    runtime: float | None
    tracked_seconds: float | None
    output_line_count: int
    file_count: int
    system_keys: list[str]
    problems: list[str]
    rows_lost: int
    daemon_seq: int
    writer_hash: str
    deleted_at: float | None
    client_tags: list[str]
    field_times: dict[str, Any]  # see _field_times: when each field was last written
    stop_requested_at: float | None
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._loaded = self._values()

    def _values(self) -> dict[str, Any]:
        return {name: copy(getattr(self, name)) for name in _RUN_FIELDS}

    def note_problem(self, text: str, rows_lost: int = 0) -> None:
        """Records what was lost or refused, for `tracklog runs` and the run's page. Past
        MAX_PROBLEMS entries the last one counts the rest, so the list stays bounded."""
        self.rows_lost += rows_lost
        problems = self.problems
        if len(problems) < MAX_PROBLEMS - 1:
            problems.append(text[:MAX_SHORT_TEXT])
        elif len(problems) == MAX_PROBLEMS - 1:
            problems.append("1 more problem")
        else:
            more = int(problems[-1].split(" ", 1)[0]) + 1
            problems[-1] = f"{more} more problems"

    def save(
        self, conn: Connection, metrics: tuple[_run_values.MetricRows, _run_values.MetricRows] | None = None
    ) -> None:
        """Writes the changed run row; ``metrics``: its metric summary rows before and after, when
        this change logged history."""
        values = self._values()
        if values != self._loaded:
            # One prepared UPDATE of every field: cheaper than building a statement per change set.
            conn.execute(_SAVE_RUN, {"b_pk": self.pk, **{f"b_{k}": v for k, v in values.items()}})
            # The searchable copy of config, summary, tags and user, in the same transaction.
            _run_values.sync(conn, self, self._loaded, metrics)
            self._loaded = values


_RUN_FIELDS = [f.name for f in fields(LockedRun) if f.name not in ("pk", "_loaded")]
_RUN_COLUMNS = {"group": "run_group"}  # attribute name -> column name where they differ


def lock_run(conn: Connection, key: RunKey) -> LockedRun | None:
    params = {"b_entity": key.entity, "b_project": key.project, "b_run_id": key.id}
    row = conn.execute(_LOCK_RUN, params).mappings().one_or_none()
    return None if row is None else LockedRun(**row)


def writer_hash(token: str) -> str:
    """What the store keeps of a writer token: its sha256 in hex, or "" for no token."""
    if len(token) > MAX_WRITER_TOKEN:
        raise InvalidInputError(f"writer token of {len(token)} characters; the limit is {MAX_WRITER_TOKEN}")
    return hashlib.sha256(token.encode("utf-8")).hexdigest() if token else ""


def check_not_deleted(run: LockedRun, key: RunKey) -> None:
    """Raises PermissionDeniedError for a deleted run: its id stays reserved, so nothing is applied to
    it again (a resend of its frames, or a new run started with its id)."""
    if run.deleted_at is not None:
        raise PermissionDeniedError(
            f"run {key} was deleted; its id stays reserved in project {key.project}: "
            "start the run with another id"
        )


def identity(run: LockedRun) -> RunIdentity:
    return RunIdentity(
        writer_hash=run.writer_hash,
        state=RunState(run.state),
        finished=run.finished_at is not None,
        deleted=run.deleted_at is not None,
        last_step=run.last_step,
        name=run.name,
        config_json=run.config_json,
    )


def _same_writer(run: LockedRun, writer: str) -> bool:
    return not run.writer_hash or hmac.compare_digest(run.writer_hash, writer)


def _take_over(run: LockedRun, key: RunKey, frames: Sequence[tuple[int, Op]], writer: str) -> None:
    """Frames from another incarnation of the run (another writer token). Only its RunStart (seq 1
    of its own sequence) with resume="allow"/"must" may take the run over, and only when
    ``_identity.check`` allows it (the run is not deleted nor still running): the run is then handed
    to the new writer, whose sequences start afresh; the old incarnation's frames are refused from
    then on. Anything else is refused whole (PermissionDeniedError), naming resume=."""
    first_seq, first_op = frames[0] if frames else (0, None)
    if first_seq == 1 and isinstance(first_op, StartOp):
        verdict = _identity.check(key, identity(run), writer, first_op.resume)
        if verdict.verdict is _identity.Verdict.RESUMABLE:
            run.writer_hash = writer
            run.last_seq = 0
            run.daemon_seq = 0
            return
        raise PermissionDeniedError(verdict.message)
    check_writer(run, key, writer)


def check_writer(run: LockedRun, key: RunKey, writer: str) -> None:
    """Raises PermissionDeniedError unless ``writer`` (``writer_hash`` of the request's token) is the
    run's writer. Checked before anything else, resends included: a stranger learns nothing and
    changes nothing. A run with an empty hash accepts any writer."""
    if run.writer_hash and not hmac.compare_digest(run.writer_hash, writer):
        raise PermissionDeniedError(
            f"run {key} accepts frames only from its writer, the process that started it: "
            + ("this request has another writer token" if writer else "this request has no writer token")
            + " (a run started with an id that another run already has is refused; start it with "
            "resume='allow' to continue that run, or choose another id)"
        )


def apply_frames(
    conn: Connection, key: RunKey, frames: Sequence[tuple[int, Op]], now: float, writer: str = ""
) -> IngestResult:
    """``writer`` is ``writer_hash`` of the request's token."""
    run = lock_run(conn, key)
    if run is not None:
        check_not_deleted(run, key)
        if not _same_writer(run, writer):
            _take_over(run, key, frames, writer)
    last_seq = run.last_seq if run is not None else 0
    fresh = [(seq, op) for seq, op in frames if seq > last_seq]  # already applied: an idempotent resend
    if not fresh:
        return IngestResult(True, last_seq)
    first_seq, first_op = fresh[0]
    if first_seq != last_seq + 1:
        return IngestResult(False, last_seq)  # a gap: the sender resends from last_seq + 1
    if run is None:
        if isinstance(first_op, StartOp):
            run = _create_run(conn, first_op, now, writer)
            fresh = fresh[1:]
        elif isinstance(first_op, RefusedOp | LostOp) and first_seq == 1:  # seq 1 is the RunStart
            # Refused, or lost to damage on disk: the run is created from its key with defaults,
            # and the applier notes the loss, so that the rest of the run is kept.
            run = _create_run(conn, _default_start(key, now), now, writer)
        else:
            return IngestResult(False, 0)
    applier = _Applier(conn, run, now)
    applier.apply(fresh)
    run.last_seq = through(*frames[-1])  # past the frames a trailing FramesLost accounts for
    _heard_from(run, now)
    run.save(conn, applier.metrics)
    stop = run.stop_requested_at is not None and run.finished_at is None
    return IngestResult(True, run.last_seq, tuple(applier.refused), stop_requested=stop)


def _heard_from(run: LockedRun, now: float) -> None:
    """Frames of the run prove its writer alive, as a heartbeat does: on a store busy with ingest a
    heartbeat may come late, but the frames it waited behind already said the run lives."""
    if run.finished_at is None:
        run.heartbeat_at = max(run.heartbeat_at, now)
    run.state = _states.alive(RunState(run.state), run.finished_at is not None).value


def _default_start(key: RunKey, now: float) -> StartOp:
    return StartOp(
        key=key, name="", notes="", tags=(), group="", job_type="", config={}, start_time=now, pid=0,
        host="", run_dir="", offline=False, resume="",
    )  # fmt: skip


def _unique_name(conn: Connection, op: StartOp) -> str:
    """A generated name (``adjective-noun-N``) another run of the project already has is numbered
    past the project's runs instead (the SDK numbers by what it saw: its run folders, or the store
    when it asked). A chosen name is kept as it is: names are not identities."""
    name = op.name or op.key.id
    if not op.name_generated or not _name_taken(conn, op.key, name):
        return name
    stem = name.rsplit("-", 1)[0]
    count = conn.execute(
        select(func.count())
        .select_from(_RUNS)
        .where(_RUNS.c.entity == op.key.entity, _RUNS.c.project == op.key.project)
    ).scalar_one()
    for number in range(int(count) + 1, int(count) + 1000):
        if not _name_taken(conn, op.key, f"{stem}-{number}"):
            return f"{stem}-{number}"
    return name  # a thousand taken in a row: keep it rather than fail the run


def _name_taken(conn: Connection, key: RunKey, name: str) -> bool:
    found = conn.execute(
        select(_RUNS.c.pk)
        .where(_RUNS.c.entity == key.entity, _RUNS.c.project == key.project, _RUNS.c.name == name)
        .limit(1)
    ).first()
    return found is not None


def _create_run(conn: Connection, op: StartOp, now: float, writer: str) -> LockedRun:
    values: dict[str, Any] = {
        "run_id": op.key.id,
        "name": _unique_name(conn, op),
        "notes": op.notes,
        "tags": list(op.tags),
        "group": op.group,
        "job_type": op.job_type,
        "state": _states.START.value,
        "exit_code": 0,
        "finish_reason": "",
        "heartbeat_at": now,
        "finished_at": None,
        "config_json": _dumps_doc(op.config, "config"),
        "summary_json": "{}",
        "summary_removed": [],
        "metadata_json": dumps({"pid": op.pid, "offline": op.offline}),
        "host": op.host,
        "run_dir": op.run_dir,
        "last_seq": 1,
        "history_rows": 0,
        "last_step": -1,
        "runtime": None,
        "tracked_seconds": None,
        "output_line_count": 0,
        "file_count": 0,
        "system_keys": [],
        "problems": [],
        "rows_lost": 0,
        "daemon_seq": 0,
        "writer_hash": writer,
        "deleted_at": None,
        "client_tags": list(op.tags),
        "field_times": {},  # what the run starts with takes any later write
        "stop_requested_at": None,
    }
    row = {_RUN_COLUMNS.get(k, k): v for k, v in values.items()}
    row.update(entity=op.key.entity, project=op.key.project, created_at=op.start_time or now)
    result = cast(CursorResult[Any], conn.execute(insert(_RUNS).values(row)))
    pk = result.inserted_primary_key[0]  # type: ignore[index]  # the chunks reference it
    run = LockedRun(pk=pk, **values)
    _run_values.sync(conn, run, None)
    return run


_dumps_doc = dumps_doc  # the name _daemon_ingest imports


class _Applier:
    """Applies the ops of one ingest to one locked run; history writes are gathered and flushed once."""

    def __init__(self, conn: Connection, run: LockedRun, now: float) -> None:
        self.conn = conn
        self.run = run
        self.now = now
        self.chunks: list[dict[str, Any]] = []
        self.metric_cols: list[ColumnChunk] = []
        self.capture = CaptureWriter(conn, run, now)
        self.refused: list[RefusedRecord] = []
        self.metrics: tuple[_run_values.MetricRows, _run_values.MetricRows] | None = None  # before, after

    def apply(self, ops: Sequence[tuple[int, Op]]) -> None:
        for seq, op in ops:
            if isinstance(op, HistoryOp):
                self._history(seq, op)
            elif isinstance(op, StartOp):
                self._resume(op)
            elif isinstance(op, ConfigOp):
                self._config(op)
            elif isinstance(op, SummaryOp):
                self._summary(op)
            elif isinstance(op, UpdateOp):
                self._update(op)
            elif isinstance(op, FinishOp):
                self._finish(op)
            elif isinstance(op, SystemOp):
                self.capture.system(seq, op)
            elif isinstance(op, OutputOp):
                self.capture.output(op)
            elif isinstance(op, FileOp):
                self.capture.file(op)
            elif isinstance(op, MetadataOp):
                self._metadata(op)
            elif isinstance(op, TimingOp):
                self.run.runtime = op.runtime
                self.run.tracked_seconds = op.tracked_seconds
            elif isinstance(op, LostOp | DroppedOp):
                self.run.note_problem(op.problem, op.rows)
            elif isinstance(op, RefusedOp):
                self._refused(seq, op)
            else:
                assert isinstance(op, EmptyOp)
        self.capture.flush()  # first: it may still refuse the batch (a file chunk out of order)
        if self.chunks:
            # Core executemany on the table: the ORM's bulk path would add per-row bookkeeping.
            self.conn.execute(insert(_CHUNKS), self.chunks)
            self.metrics = _merge_metric_summaries(self.conn, self.run.pk, self.metric_cols)

    def _history(self, seq: int, batch: HistoryOp) -> None:
        cut = batch.after(self.run.last_step)
        dropped = len(batch.steps) - (len(cut.steps) if cut is not None else 0)
        if dropped:  # never silent: e.g. a resume that could not ask the store started at step 0
            self.run.note_problem(
                f"record {seq}: {dropped} history rows at or below step {self.run.last_step}, the run's "
                "last stored step, were dropped (steps must grow; a resume continues after the last step)",
                dropped,
            )
        if cut is None:
            return
        run_pk = self.run.pk
        self.chunks.append(
            {
                "run_pk": run_pk,
                "key": TIMESTAMP_KEY,
                "seq": seq,
                "col_type": FLOAT,
                "min_step": cut.steps[0],
                "max_step": cut.last_step,
                "n": len(cut.steps),
                "steps": cut.steps_bytes,
                "values": cut.times_bytes,
            }
        )
        for col in cut.columns:
            self.chunks.append(
                {
                    "run_pk": run_pk,
                    "key": col.key,
                    "seq": seq,
                    "col_type": col.type,
                    "min_step": col.min_step,
                    "max_step": col.max_step,
                    "n": col.n,
                    "steps": col.steps_bytes,
                    "values": col.values_bytes,
                }
            )
        self.metric_cols.extend(cut.columns)
        self.run.history_rows += len(cut.steps)
        self.run.last_step = cut.last_step
        if self.run.summary_removed:  # a removed summary key shows again once it is logged again
            logged = {col.key for col in cut.columns}
            self.run.summary_removed = [k for k in self.run.summary_removed if k not in logged]

    def _refused(self, seq: int, op: RefusedOp) -> None:
        self.refused.append(RefusedRecord(seq, op.reason))
        lost = f" ({op.rows} history rows)" if op.rows else ""
        self.run.note_problem(f"record {seq} refused{lost}: {op.reason}", op.rows)

    def _resume(self, op: StartOp) -> None:
        run = self.run
        # What the resuming process states, as written when it started.
        t = write_time(op.start_time, self.now)
        if op.tags:
            self._client_tags(op.tags, t)
        edit = Edit(
            name=op.name or None,
            notes=op.notes or None,
            group=op.group or None,
            job_type=op.job_type or None,
            config=op.config,
        )
        apply_edit(run, edit, t)
        run.host = op.host or run.host
        run.run_dir = op.run_dir or run.run_dir
        metadata = json.loads(run.metadata_json)
        metadata.update(pid=op.pid, offline=op.offline)
        run.metadata_json = dumps(metadata)
        run.state = _states.START.value
        run.exit_code = 0
        run.finish_reason = ""
        run.finished_at = None
        run.heartbeat_at = self.now
        run.stop_requested_at = None  # asked of an earlier incarnation, which has ended

    def _config(self, op: ConfigOp) -> None:
        if op.items:
            apply_edit(self.run, Edit(config=op.items), write_time(op.write_time, self.now))

    def _metadata(self, op: MetadataOp) -> None:
        if not op.items:
            return
        metadata = json.loads(self.run.metadata_json)
        metadata.update(op.items)
        self.run.metadata_json = _dumps_doc(metadata, "metadata")

    def _summary(self, op: SummaryOp) -> None:
        edit = Edit(summary=op.items, summary_removed=op.removed)
        apply_edit(self.run, edit, write_time(op.write_time, self.now))

    def _update(self, op: UpdateOp) -> None:
        t = write_time(op.write_time, self.now)
        if op.tags is not None:
            self._client_tags(op.tags, t)
        edit = Edit(name=op.name, notes=op.notes, group=op.group, job_type=op.job_type)
        apply_edit(self.run, edit, t)

    def _client_tags(self, tags: Sequence[str], t: float) -> None:
        """The training process sends its whole tag list; what changed since its previous list is
        applied (per tag, the later write wins), so tags the API added or removed meanwhile are kept:
        a run knows only its own."""
        run = self.run
        before = set(run.client_tags)
        after = list(tags)
        added = [tag for tag in after if tag not in before]
        apply_edit(run, Edit(add_tags=added, remove_tags=sorted(before - set(after))), t)
        run.client_tags = after

    def _finish(self, op: FinishOp) -> None:
        run = self.run
        run.state = op.state.value
        run.exit_code = op.exit_code
        run.finish_reason = op.reason
        run.finished_at = op.end_time or self.now


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _merge_metric_summaries(
    conn: Connection, run_pk: int, columns: Sequence[ColumnChunk]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Folds the new columns into ``metric_summaries``: one SELECT, one bulk INSERT, one bulk UPDATE.
    Returns the run's rows before and after (the searchable summary is derived from them).

    Columns arrive in ascending step order per key, but a later chunk can still end below an earlier
    one of another type (a key that switched between numeric and JSON in one batch), so "last" is
    decided by comparing steps, not by arrival order.
    """
    existing = {row.key: row for row in conn.execute(_SELECT_SUMMARIES, {"b_run_pk": run_pk}).mappings()}
    merged: dict[str, dict[str, Any]] = {}
    for col in columns:
        state = merged.get(col.key)
        if state is None:
            old = existing.get(col.key)
            state = merged[col.key] = (
                dict(old)
                if old is not None
                else {
                    "run_pk": run_pk,
                    "key": col.key,
                    "last_step": -1,
                    "last_json": None,
                    "has_num": False,
                    "num_is_int": False,
                    "num_last": None,
                    "num_last_step": -1,
                    "num_min": None,
                    "num_max": None,
                }
            )
        if col.max_step > state["last_step"]:
            state["last_step"] = col.max_step
            state["last_json"] = col.last_json
        if col.num_values is None:
            continue
        state["has_num"] = True
        if col.max_step > state["num_last_step"]:
            state["num_last_step"] = col.max_step
            state["num_last"] = _nan_to_none(col.num_last)
            state["num_is_int"] = col.type != FLOAT
        if col.num_min is not None:
            lo, hi = state["num_min"], state["num_max"]
            state["num_min"] = col.num_min if lo is None or col.num_min < lo else lo
            state["num_max"] = col.num_max if hi is None or col.num_max > hi else hi
    inserts = [row for key, row in merged.items() if key not in existing]
    updates = [{f"b_{k}": v for k, v in row.items()} for key, row in merged.items() if key in existing]
    if inserts:
        conn.execute(insert(_SUMMARIES), inserts)
    if updates:
        conn.execute(_UPDATE_SUMMARY, updates)
    before = [dict(row) for row in existing.values()]
    return before, [dict(row) for key, row in existing.items() if key not in merged] + list(merged.values())


_RUNS = cast(Table, RunRow.__table__)
_CHUNKS = cast(Table, HistoryChunkRow.__table__)
# Statements of the hot path are built once; SQLAlchemy caches their compiled form.
_LOCK_RUN = (
    select(_RUNS.c.pk, *(_RUNS.c[_RUN_COLUMNS.get(name, name)].label(name) for name in _RUN_FIELDS))
    .where(
        _RUNS.c.entity == bindparam("b_entity"),
        _RUNS.c.project == bindparam("b_project"),
        _RUNS.c.run_id == bindparam("b_run_id"),
    )
    .with_for_update()  # a no-op on SQLite, where BEGIN IMMEDIATE already serializes writers
)
_SAVE_RUN = (
    update(_RUNS)
    .where(_RUNS.c.pk == bindparam("b_pk"))
    .values({_RUN_COLUMNS.get(name, name): bindparam(f"b_{name}") for name in _RUN_FIELDS})
)
_SUMMARIES = cast(Table, MetricSummaryRow.__table__)
# One UPDATE executed many times: bound parameters are the row's columns prefixed with "b_".
_SELECT_SUMMARIES = select(_SUMMARIES).where(_SUMMARIES.c.run_pk == bindparam("b_run_pk"))
_UPDATE_SUMMARY = (
    update(_SUMMARIES)
    .where(_SUMMARIES.c.run_pk == bindparam("b_run_pk"), _SUMMARIES.c.key == bindparam("b_key"))
    .values({c.name: bindparam(f"b_{c.name}") for c in _SUMMARIES.c if not c.primary_key})
)
