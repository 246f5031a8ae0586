"""The SQLAlchemy store's mutations of runs through the API: edit, delete, stop request.

Each runs in one write transaction on the locked run row (the same lock ingest takes), so an edit and
a batch of the training process's frames are applied one after the other, never interleaved: the one
applied later wins per field, and tags merge per tag (``merge_tags``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.engine import Connection

from tracklog_server._entities import RunChanges, RunKey, RunState
from tracklog_server._errors import InvalidInputError, RunDeletedError, RunNotFoundError
from tracklog_server._limits import MAX_TAGS

from ._ingest import LockedRun, _dumps_doc, lock_run, merge_tags
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


def update_run(conn: Connection, key: RunKey, changes: RunChanges) -> None:
    run = _locked(conn, key)
    if changes.name is not None:
        run.name = changes.name or run.run_id  # an empty name falls back to the id, as at creation
    if changes.notes is not None:
        run.notes = changes.notes
    if changes.group is not None:
        run.group = changes.group
    if changes.job_type is not None:
        run.job_type = changes.job_type
    if changes.add_tags or changes.remove_tags:
        tags = merge_tags(run.tags, changes.add_tags, changes.remove_tags)
        if len(tags) > MAX_TAGS:
            raise InvalidInputError(f"the run would have {len(tags)} tags; the limit is {MAX_TAGS}")
        run.tags = tags
    if changes.config or changes.config_removed:
        config = json.loads(run.config_json)
        for k in changes.config_removed:
            config.pop(k, None)
        config.update(changes.config)
        run.config_json = _dumps_doc(config, "config")
    if changes.summary or changes.summary_removed:
        # As a SummaryOp from the training process: explicit values override logged ones, and a
        # removed key hides its logged value until the key is logged again.
        summary = json.loads(run.summary_json)
        summary.update(changes.summary)
        removed = [k for k in run.summary_removed if k not in changes.summary]
        for k in changes.summary_removed:
            summary.pop(k, None)
            if k not in removed:
                removed.append(k)
        run.summary_json = _dumps_doc(summary, "summary")
        run.summary_removed = removed
    run.save(conn)


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
