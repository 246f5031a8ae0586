"""The SQLAlchemy store's mutations of runs through the API: edit, delete, stop request.

Each runs in one write transaction on the locked run row (the same lock ingest takes), so an edit and
a batch of the training process's frames are applied one after the other, never interleaved; per
field the later write wins, by write time (``_field_times``), and tags merge per tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.engine import Connection

from tracklog_server._entities import RunChanges, RunKey, RunState
from tracklog_server._errors import InvalidInputError, RunDeletedError, RunNotFoundError

from ._field_times import Edit, apply_edit
from ._ingest import LockedRun, lock_run
from ._models import (
    FileChunkRow,
    FileVersionRow,
    HistoryChunkRow,
    MetricSummaryRow,
    OutputLineRow,
    RunRow,
    RunValueRow,
    SystemChunkRow,
)


def deleted_message(key: RunKey) -> str:
    return f"run {key} was deleted (its id stays reserved)"


def _locked(conn: Connection, key: RunKey) -> LockedRun:
    run = lock_run(conn, key)
    if run is None:
        raise RunNotFoundError(f"run {key} not found")
    if run.deleted_at is not None:
        raise RunDeletedError(deleted_message(key))
    return run


def update_run(conn: Connection, key: RunKey, changes: RunChanges, now: float) -> None:
    """Applies an API edit as written at ``now`` (the store's clock): per field, it wins unless the
    training process wrote the field later (see ``_field_times``)."""
    run = _locked(conn, key)
    _apply_changes(run, changes, now)
    run.save(conn)


def update_runs(conn: Connection, keys: Sequence[RunKey], changes: RunChanges, now: float) -> int:
    """The same edit of many runs, all or nothing: an unknown or deleted run among them, or one the
    edit would take over a limit, fails the whole call, naming it."""
    # Locked in one order, so that two bulk edits of overlapping runs cannot deadlock.
    ordered = sorted(set(keys), key=lambda k: (k.entity, k.project, k.id))
    runs = [_locked(conn, key) for key in ordered]
    for key, run in zip(ordered, runs, strict=True):
        try:
            _apply_changes(run, changes, now)
        except InvalidInputError as exc:
            raise InvalidInputError(f"run {key}: {exc}") from exc
    for run in runs:
        run.save(conn)
    return len(runs)


def _apply_changes(run: LockedRun, changes: RunChanges, now: float) -> None:
    edit = Edit(
        name=changes.name,
        notes=changes.notes,
        group=changes.group,
        job_type=changes.job_type,
        add_tags=changes.add_tags,
        remove_tags=changes.remove_tags,
        config=changes.config,
        config_removed=changes.config_removed,
        summary=changes.summary,
        summary_removed=changes.summary_removed,
    )
    apply_edit(run, edit, now)


def delete_runs(conn: Connection, keys: Sequence[RunKey], delete_files: bool, now: float) -> int:
    """Marks the runs deleted and drops their data, all or nothing: an unknown or already deleted run
    among them fails the whole call, naming it."""
    pks: list[int] = []
    for key in dict.fromkeys(keys):
        pks.append(_locked(conn, key).pk)
    if not pks:
        return 0
    conn.execute(delete(HistoryChunkRow).where(HistoryChunkRow.run_pk.in_(pks)))
    conn.execute(delete(MetricSummaryRow).where(MetricSummaryRow.run_pk.in_(pks)))
    conn.execute(delete(SystemChunkRow).where(SystemChunkRow.run_pk.in_(pks)))
    conn.execute(delete(OutputLineRow).where(OutputLineRow.run_pk.in_(pks)))
    conn.execute(delete(RunValueRow).where(RunValueRow.run_pk.in_(pks)))  # searches skip them anyway
    if delete_files:  # chunks first: they reference their version
        conn.execute(delete(FileChunkRow).where(FileChunkRow.run_pk.in_(pks)))
        conn.execute(delete(FileVersionRow).where(FileVersionRow.run_pk.in_(pks)))
    # The row stays (the id stays reserved); its counters describe the data it still holds.
    values: dict[str, Any] = {"deleted_at": now, "stop_requested_at": None, "history_rows": 0}
    values.update(last_step=-1, output_line_count=0, system_keys=[])
    if delete_files:
        values["file_count"] = 0
    conn.execute(update(RunRow).where(RunRow.pk.in_(pks)).values(values))
    return len(pks)


def request_stop(conn: Connection, key: RunKey, when: frozenset[RunState], now: float) -> RunState:
    """Records a stop request when the run's state is in ``when`` and it has not finished; returns the
    state found either way (the caller decides what a refusal says)."""
    run = _locked(conn, key)
    state = RunState(run.state)
    if state in when and run.finished_at is None:
        conn.execute(update(RunRow).where(RunRow.pk == run.pk).values(stop_requested_at=now))
    return state


def stop_requested(conn: Connection, keys: Sequence[RunKey]) -> list[RunKey]:
    """Which of ``keys`` have a stop request and have not finished (nor been deleted)."""

    rows = conn.execute(
        select(RunRow.entity, RunRow.project, RunRow.run_id).where(
            tuple_(RunRow.entity, RunRow.project, RunRow.run_id).in_(
                [(k.entity, k.project, k.id) for k in keys]
            ),
            RunRow.stop_requested_at.is_not(None),
            RunRow.finished_at.is_(None),
            RunRow.deleted_at.is_(None),
        )
    )
    return [RunKey(e, p, i) for e, p, i in rows]
