"""The SQLAlchemy store: one session per operation, rows turned into entities before they leave.

Writes go through an engine whose SQLite transactions begin IMMEDIATE (see ``_database``); reads use
plain deferred transactions, which in WAL mode never wait for the writer.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine, case, func, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import UnaryExpression

from tracklog._history import dumps
from tracklog_server import _run_states as _states
from tracklog_server._capture_records import check_file_name
from tracklog_server._entities import (
    FileInfo,
    HistoryPage,
    HistoryQuery,
    IngestResult,
    MetricSummary,
    OutputLine,
    ProjectDescription,
    ProjectKey,
    ProjectSummary,
    RefusedRecord,
    Run,
    RunChanges,
    RunFilter,
    RunGroup,
    RunIdentity,
    RunKey,
    RunState,
    SystemPage,
    SystemQuery,
    SystemSnapshot,
)
from tracklog_server._errors import (
    InvalidInputError,
    RunDeletedError,
    RunNotFoundError,
    StoreConflictError,
    translate_db_errors,
)
from tracklog_server._filter_ast import Field, Node, Order, SortKey
from tracklog_server._limits import MAX_RUNS_PER_HEARTBEAT
from tracklog_server._records import Op, decode_frames
from tracklog_server._records import refused as refused_op

from . import _sql_mutations, _sql_search, _statistics
from ._capture_read import list_files, open_file, read_chunks, read_logs
from ._daemon_ingest import apply_daemon_frames, decode_daemon_frames
from ._database import create_store_engine, upgrade_schema, writer
from ._history_columns import Steps, Values, read_columns
from ._history_read import read_history
from ._ingest import apply_frames, writer_hash
from ._models import MetricSummaryRow, RunRow
from ._sql_projects import list_projects, project_series_keys
from ._store import AbstractStore
from ._system_read import latest_system, read_system
from ._write_turns import NoTurns, WriteTurns

Clock = Callable[[], float]
T = TypeVar("T")

_ORDERS: dict[str, tuple[UnaryExpression[Any], ...]] = {
    "created_at": (RunRow.created_at.asc(), RunRow.pk.asc()),
    "-created_at": (RunRow.created_at.desc(), RunRow.pk.desc()),
    "name": (RunRow.name.asc(), RunRow.pk.asc()),
    "-name": (RunRow.name.desc(), RunRow.pk.desc()),
}
# A run created concurrently by two replicas makes one of them fail on the unique constraint; the
# retry finds the run and skips the frames the other applied.
_INGEST_ATTEMPTS = 3


class SqlAlchemyStore(AbstractStore):
    """A store on SQLite (``sqlite:///PATH``) or PostgreSQL (``postgresql://...``).

    ``clock`` returns unix seconds; it stamps heartbeats and decides crashes (tests pass a fake one).
    The schema is migrated to the newest version on construction unless ``migrate`` is False.
    """

    def __init__(self, url: str | Engine, *, clock: Clock = time.time, migrate: bool = True) -> None:
        self._owns_engine = not isinstance(url, Engine)
        self.engine = create_store_engine(url) if isinstance(url, str) else url
        self._clock = clock
        try:
            if migrate:
                upgrade_schema(self.engine)
        except BaseException:
            self.close()
            raise
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = writer(self.engine)
        sqlite = self.engine.dialect.name == "sqlite"
        self._turns = WriteTurns() if sqlite else NoTurns()

    @contextlib.contextmanager
    def _writing(self, action: str, *, urgent: bool = False) -> Iterator[Connection]:
        """A write transaction, errors translated; on SQLite taken in turns (``_write_turns``), urgent
        ones (heartbeats, crash detection) before the ordinary ones that wait."""
        with self._turns.turn(urgent), translate_db_errors(action), self._write_engine.begin() as conn:
            yield conn

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def ingest(
        self, key: RunKey, frames: Sequence[tuple[int, bytes]], *, writer_token: str = ""
    ) -> IngestResult:
        writer = writer_hash(writer_token)
        ops = decode_frames(key, frames)  # a record that breaks a rule is a RefusedOp from here on
        if not ops:
            return IngestResult(True, self._last_seq(key))
        try:
            return self._apply(key, ops, writer)
        except InvalidInputError:
            # Only the database or what the run holds could tell (PostgreSQL refusing a value, a file
            # chunk out of order): find the record, one frame per transaction, and refuse only it.
            return self._apply_one_by_one(key, ops, writer)

    def _apply_one_by_one(self, key: RunKey, ops: Sequence[tuple[int, Op]], writer: str) -> IngestResult:
        refused: list[RefusedRecord] = []
        result = IngestResult(True, 0)
        for seq, op in ops:
            try:
                result = self._apply(key, [(seq, op)], writer)
            except InvalidInputError as exc:
                result = self._apply(key, [(seq, refused_op(op, str(exc)))], writer)
            refused.extend(result.refused)
            if not result.accepted:
                break
        return IngestResult(result.accepted, result.applied_through, tuple(refused))

    def _apply(self, key: RunKey, ops: Sequence[tuple[int, Op]], writer: str) -> IngestResult:
        """Applies ``ops`` in one transaction, all or nothing (retried on a concurrent creation)."""
        for attempt in range(1, _INGEST_ATTEMPTS + 1):
            try:
                # A Core connection, not an ORM session: ingest issues only Core statements and is
                # the hot path (the session machinery would cost more than the statements).
                with self._writing(f"ingest into run {key}") as conn:
                    return apply_frames(conn, key, ops, self._clock(), writer)
            except StoreConflictError:
                if attempt == _INGEST_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def ingest_daemon(
        self, key: RunKey, frames: Sequence[tuple[int, bytes]], *, writer_token: str = ""
    ) -> IngestResult:
        writer = writer_hash(writer_token)
        ops = decode_daemon_frames(frames)  # all validation happens before the transaction
        if not ops:
            with translate_db_errors(f"read run {key}"), self._read() as session:
                found = session.execute(select(RunRow.daemon_seq).where(*_where(key))).one_or_none()
            return IngestResult(found is not None, found[0] if found is not None else 0)
        what = f"ingest the daemon's frames into run {key}"
        with self._writing(what) as conn:
            return apply_daemon_frames(conn, key, ops, self._clock(), writer)

    def _last_seq(self, key: RunKey) -> int:
        with translate_db_errors(f"read run {key}"), self._read() as session:
            found = session.execute(select(RunRow.last_seq).where(*_where(key))).scalar_one_or_none()
        return found or 0

    def heartbeat(self, keys: Sequence[RunKey]) -> tuple[RunKey, ...]:
        if not keys:
            return ()
        if len(keys) > MAX_RUNS_PER_HEARTBEAT:
            limit = MAX_RUNS_PER_HEARTBEAT
            raise InvalidInputError(f"{len(keys)} runs in one heartbeat; the limit is {limit}")
        revivable, alive = _states.REVIVABLE.value, _states.ALIVE.value
        stmt = (
            update(RunRow)
            .where(
                tuple_(RunRow.entity, RunRow.project, RunRow.run_id).in_(
                    [(k.entity, k.project, k.id) for k in keys]
                ),
                RunRow.finished_at.is_(None),  # a run that has a Finish record is never revived
                RunRow.deleted_at.is_(None),
            )
            .values(
                heartbeat_at=self._clock(),
                # _states.alive as one statement: replicas may beat the same run at once.
                state=case((RunRow.state == revivable, alive), else_=RunRow.state),
            )
            .execution_options(synchronize_session=False)
        )
        with self._writing("record heartbeats", urgent=True) as conn:
            conn.execute(stmt)
            # Answered on every heartbeat until the run finishes: a daemon that missed one answer (or
            # restarted) hears it again, and forwards it once per client stream.
            return tuple(_sql_mutations.stop_requested(conn, keys))

    def refresh_statistics(self) -> bool:
        if self.engine.dialect.name != "sqlite":
            return False  # PostgreSQL: autovacuum analyzes
        with translate_db_errors("check the planner's statistics"), self.engine.connect() as conn:
            stale = _statistics.stale_tables(conn)
        if not stale:
            return False
        for table in stale:  # a turn each: heartbeats and ingest go between
            with self._writing(f"refresh the planner's statistics of {table}") as conn:
                _statistics.analyze(conn, table)
        return True

    def mark_crashed(self, timeout: float) -> int:
        stmt = (
            update(RunRow)
            .where(
                RunRow.state == _states.SILENT_FROM.value,
                RunRow.heartbeat_at < self._clock() - timeout,
                RunRow.deleted_at.is_(None),
            )
            .values(state=_states.SILENT_TO.value)
            .execution_options(synchronize_session=False)
        )
        with self._writing("mark crashed runs", urgent=True) as conn:
            count: int = conn.execute(stmt).rowcount
        return count

    def get_run(self, key: RunKey) -> Run:
        with translate_db_errors(f"read run {key}"), self._read() as session:
            row = session.execute(select(RunRow).where(*_where(key))).scalar_one_or_none()
            if row is None:
                raise RunNotFoundError(f"run {key} not found")
            if row.deleted_at is not None:
                raise RunDeletedError(_sql_mutations.deleted_message(key))
            metrics = _metric_rows(session, [row.pk])
            return _to_run(row, metrics.get(row.pk, []))

    def list_runs(self, run_filter: RunFilter) -> list[Run]:
        order = _ORDERS.get(run_filter.order or "-created_at")
        if order is None:
            raise InvalidInputError(f"unknown order {run_filter.order!r}; use one of {', '.join(_ORDERS)}")
        stmt = select(RunRow).where(RunRow.deleted_at.is_(None)).order_by(*order)
        if run_filter.entity:
            stmt = stmt.where(RunRow.entity == run_filter.entity)
        if run_filter.project:
            stmt = stmt.where(RunRow.project == run_filter.project)
        if run_filter.state is not None:
            stmt = stmt.where(RunRow.state == run_filter.state.value)
        if run_filter.limit:
            stmt = stmt.limit(run_filter.limit)
        if run_filter.offset:
            stmt = stmt.offset(run_filter.offset)
        with translate_db_errors("list runs"), self._read() as session:
            rows = session.execute(stmt).scalars().all()
            metrics = _metric_rows(session, [row.pk for row in rows])
            return [_to_run(row, metrics.get(row.pk, [])) for row in rows]

    def list_projects(self, entity: str = "") -> list[ProjectSummary]:
        with translate_db_errors("list projects"), self._read() as session:
            return list_projects(session, entity)

    def project_series_keys(self, project: ProjectKey) -> tuple[tuple[str, ...], tuple[str, ...]]:
        with translate_db_errors(f"read the keys of project {project}"), self._read() as session:
            return project_series_keys(session, project)

    def history(self, key: RunKey, query: HistoryQuery) -> Iterator[HistoryPage]:
        with translate_db_errors(f"read history of run {key}"), self._read() as session:
            run_pk = _run_pk(session, key)
            keys: list[str] = []
            if not query.keys:
                keys = list(
                    session.execute(
                        select(MetricSummaryRow.key)
                        .where(MetricSummaryRow.run_pk == run_pk)
                        .order_by(MetricSummaryRow.key)
                    ).scalars()
                )
        return self._translated(read_history(self._read, run_pk, keys, query), f"read history of run {key}")

    def history_columns(
        self, key: RunKey, keys: Sequence[str], min_step: int = 0, max_step: int | None = None
    ) -> dict[str, tuple[Steps, Values]]:
        with translate_db_errors(f"read history of run {key}"), self._read() as session:
            return read_columns(session, _run_pk(session, key), keys, min_step, max_step)

    def system_history(self, key: RunKey, query: SystemQuery) -> Iterator[SystemPage]:
        action = f"read system metrics of run {key}"
        with translate_db_errors(action), self._read() as session:
            found = session.execute(
                select(RunRow.pk, RunRow.system_keys, RunRow.deleted_at).where(*_where(key))
            ).one_or_none()
        if found is None:
            raise RunNotFoundError(f"run {key} not found")
        run_pk, known, deleted_at = found
        if deleted_at is not None:
            raise RunDeletedError(_sql_mutations.deleted_message(key))
        if query.keys:  # only keys the run has: bounds the query whatever the request lists
            have = set(known)
            keys = [k for k in dict.fromkeys(query.keys) if k in have]
        else:
            keys = list(known)
        pages = read_system(self._read, run_pk, keys, not query.keys, query.samples)
        return self._translated(pages, action)

    def latest_system_metrics(self, key: RunKey) -> SystemSnapshot | None:
        with translate_db_errors(f"read system metrics of run {key}"), self._read() as session:
            return latest_system(session, _run_pk(session, key))

    def logs(self, key: RunKey, offset: int = 0, limit: int = 0) -> Iterator[tuple[OutputLine, ...]]:
        if offset < 0 or limit < 0:
            raise InvalidInputError("offset and limit must not be negative")
        action = f"read the console output of run {key}"
        with translate_db_errors(action), self._read() as session:
            found = session.execute(
                select(RunRow.pk, RunRow.output_line_count, RunRow.deleted_at).where(*_where(key))
            ).one_or_none()
        if found is None:
            raise RunNotFoundError(f"run {key} not found")
        run_pk, total, deleted_at = found
        if deleted_at is not None:
            raise RunDeletedError(_sql_mutations.deleted_message(key))
        stop = min(total, offset + limit) if limit else total
        return self._translated(read_logs(self._read, run_pk, offset, stop), action)

    def list_files(self, key: RunKey) -> list[FileInfo]:
        with translate_db_errors(f"list the files of run {key}"), self._read() as session:
            return list_files(session, _run_pk(session, key))

    def read_file(self, key: RunKey, name: str, version: int = 0) -> tuple[FileInfo, Iterator[bytes]]:
        check_file_name(name)
        if version < 0:
            raise InvalidInputError("file version must not be negative")
        action = f"read file {name!r} of run {key}"
        with translate_db_errors(action), self._read() as session:
            run_pk = _run_pk(session, key)
            info, layout = open_file(session, run_pk, str(key), name, version)
        return info, self._translated(read_chunks(self._read, run_pk, info, layout), action)

    def update_run(self, key: RunKey, changes: RunChanges) -> Run:
        with self._writing(f"update run {key}") as conn:
            _sql_mutations.update_run(conn, key, changes, self._clock())
        return self.get_run(key)

    def update_runs(self, keys: Sequence[RunKey], changes: RunChanges) -> int:
        with self._writing("update runs") as conn:
            return _sql_mutations.update_runs(conn, keys, changes, self._clock())

    def delete_runs(self, keys: Sequence[RunKey], delete_files: bool = False) -> int:
        with self._writing("delete runs") as conn:
            return _sql_mutations.delete_runs(conn, keys, delete_files, self._clock())

    def request_stop(self, key: RunKey, when: frozenset[RunState]) -> RunState:
        with self._writing(f"request a stop of run {key}") as conn:
            return _sql_mutations.request_stop(conn, key, when, self._clock())

    def search_runs(
        self,
        project: ProjectKey,
        where: Node,
        order: Order,
        limit: int,
        after: SortKey | None = None,
        timeout: float = 10.0,
    ) -> tuple[list[tuple[Run, SortKey]], int]:
        compiler = _sql_search.Compiler(self.engine.dialect.name)
        with (
            translate_db_errors(f"search runs of {project}"),
            self._read() as session,
            _sql_search.time_limited(session, timeout),
        ):
            found, total = _sql_search.search_rows(session, compiler, project, where, order, limit, after)
            metrics = _metric_rows(session, [row.pk for row, _key in found])
        return [(_to_run(row, metrics.get(row.pk, [])), key) for row, key in found], total

    def group_runs(
        self, project: ProjectKey, where: Node, by: Field, timeout: float = 10.0
    ) -> list[RunGroup]:
        compiler = _sql_search.Compiler(self.engine.dialect.name)
        with (
            translate_db_errors(f"group runs of {project}"),
            self._read() as session,
            _sql_search.time_limited(session, timeout),
        ):
            return _sql_search.group_rows(session, compiler, project, where, by)

    def describe_project(self, project: ProjectKey) -> ProjectDescription:
        with translate_db_errors(f"describe project {project}"), self._read() as session:
            runs, keys = _sql_search.describe_rows(session, project)
        return ProjectDescription(project, runs, tuple(keys))

    def run_identity(self, key: RunKey) -> tuple[RunIdentity | None, int]:
        with translate_db_errors(f"read run {key}"), self._read() as session:
            row = session.execute(select(RunRow).where(*_where(key))).scalar_one_or_none()
            count = session.execute(
                select(func.count())
                .select_from(RunRow)
                .where(RunRow.entity == key.entity, RunRow.project == key.project)
            ).scalar_one()
        if row is None:
            return None, int(count)
        found = RunIdentity(
            writer_hash=row.writer_hash,
            state=RunState(row.state),
            finished=row.finished_at is not None,
            deleted=row.deleted_at is not None,
            last_step=row.last_step,
            name=row.name,
            config_json=row.config_json,
        )
        return found, int(count)

    @staticmethod
    def _translated(items: Iterator[T], action: str) -> Iterator[T]:
        with translate_db_errors(action):
            yield from items


def _run_pk(session: Session, key: RunKey) -> int:
    found = session.execute(select(RunRow.pk, RunRow.deleted_at).where(*_where(key))).one_or_none()
    if found is None:
        raise RunNotFoundError(f"run {key} not found")
    if found[1] is not None:
        raise RunDeletedError(_sql_mutations.deleted_message(key))
    return int(found[0])


def _where(key: RunKey) -> tuple[Any, ...]:
    return (RunRow.entity == key.entity, RunRow.project == key.project, RunRow.run_id == key.id)


# The columns of metric_summaries a run's view needs, in the order _to_run unpacks them.
_METRIC_COLUMNS = (
    "key",
    "last_json",
    "has_num",
    "num_is_int",
    "num_last",
    "num_last_step",
    "num_min",
    "num_max",
)


def _metric_rows(session: Session, run_pks: Sequence[int]) -> dict[int, list[Any]]:
    """The metric summaries of these runs, by run, in key order: plain tuples of ``_METRIC_COLUMNS``,
    not ORM objects (building ~1,000 of those for a page of 50 runs took a third of a search's time;
    reading rows by column name, a quarter of what remained)."""
    out: dict[int, list[Any]] = {}
    if not run_pks:
        return out
    table = MetricSummaryRow.__table__
    columns = [table.c[name] for name in _METRIC_COLUMNS]
    rows = session.execute(
        select(table.c.run_pk, *columns)
        .where(table.c.run_pk.in_(run_pks))
        .order_by(table.c.run_pk, table.c.key)
    ).all()
    for run_pk, *values in rows:
        out.setdefault(run_pk, []).append(values)
    return out


def _to_run(row: RunRow, metric_rows: Sequence[Any]) -> Run:
    # metric_rows: from _metric_rows, each the values of _METRIC_COLUMNS in that order.
    removed = set(row.summary_removed)
    summary: dict[str, Any] = {}
    metrics = []
    nan = math.nan
    for key, last_json, has_num, num_is_int, num_last, num_last_step, num_min, num_max in metric_rows:
        last = nan if num_last is None else num_last
        if has_num:
            lo = nan if num_min is None else num_min
            hi = nan if num_max is None else num_max
            metrics.append(MetricSummary(key, last, lo, hi, num_last_step))
        if key in removed:
            continue
        if last_json is not None:
            summary[key] = json.loads(last_json)
        elif has_num:
            summary[key] = int(last) if num_is_int and math.isfinite(last) else last
    summary.update(json.loads(row.summary_json))
    runtime = row.runtime
    if runtime is None:  # no Timing record (yet): wall time from start to the end or the latest news
        runtime = max(0.0, (row.finished_at or row.heartbeat_at) - row.created_at)
    return Run(
        key=RunKey(row.entity, row.project, row.run_id),
        name=row.name,
        notes=row.notes,
        tags=tuple(row.tags),
        group=row.group,
        job_type=row.job_type,
        state=RunState(row.state),
        exit_code=row.exit_code,
        config_json=row.config_json,
        summary_json=dumps(summary),
        metrics=tuple(metrics),
        created_at=row.created_at,
        heartbeat_at=row.heartbeat_at,
        finished_at=row.finished_at or 0.0,
        history_rows=row.history_rows,
        last_step=row.last_step,
        metadata_json=row.metadata_json,
        host=row.host,
        run_dir=row.run_dir,
        last_seq=row.last_seq,
        runtime=runtime,
        tracked_seconds=runtime if row.tracked_seconds is None else row.tracked_seconds,
        output_lines=row.output_line_count,
        rows_lost=row.rows_lost,
        problems=tuple(row.problems),
        daemon_seq=row.daemon_seq,
    )
