"""Run identity and liveness in the store: every start carries an incarnation (its writer token); a
second, unrelated run with a taken id is refused naming resume=, a resume from another incarnation
takes the run over once the first has ended and its steps go on, no row of either is lost; frames
prove a run alive and their answer carries a pending stop."""

from __future__ import annotations

import pytest

from tracklog.v1 import records_pb2
from tracklog_server import PermissionDeniedError, RunKey, RunState, SqlAlchemyStore
from tracklog_server.application._caller import ANONYMOUS
from tracklog_server.application._identity import Verdict, check_run_id
from tracklog_server.application._runs import delete_runs, stop_run
from tracklog_server.testing import FakeClock

from .helpers import RunWriter, finish_record, history_record, read_rows, start_record

FIRST, SECOND = "a" * 48, "b" * 48  # two incarnations' writer tokens


def start(
    store: SqlAlchemyStore, key: RunKey, token: str, resume: str = "", steps: range = range(0)
) -> RunWriter:
    writer = RunWriter(key)
    records = [start_record(key, writer_token=token, resume=resume, name="first-name" if not resume else "")]
    if steps:
        records.append(history_record((s, {"loss": float(s)}) for s in steps))
    result = store.ingest(key, writer.frames(*records), writer_token=token)
    assert result.accepted
    assert result.applied_through == writer.seq
    return writer


def test_a_new_id_is_free_and_the_writers_own_run_continues(store: SqlAlchemyStore, key: RunKey) -> None:
    assert check_run_id(store, ANONYMOUS, key, FIRST, "").verdict is Verdict.FREE
    assert check_run_id(store, ANONYMOUS, key, FIRST, "must").verdict is Verdict.MISSING
    start(store, key, FIRST, steps=range(3))
    own = check_run_id(store, ANONYMOUS, key, FIRST, "allow")
    assert own.verdict is Verdict.OWN
    assert own.found is not None
    assert own.found.last_step == 2
    assert own.project_runs == 1


def test_a_second_unrelated_run_with_a_taken_id_is_refused_naming_resume_and_loses_no_row(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    first = start(store, key, FIRST, steps=range(5))
    taken = check_run_id(store, ANONYMOUS, key, SECOND, "")
    assert taken.verdict is Verdict.TAKEN
    assert "resume='allow'" in taken.message
    second = RunWriter(key)
    frames = second.frames(
        start_record(key, writer_token=SECOND), history_record((s, {"loss": -1.0}) for s in range(5, 9))
    )
    with pytest.raises(PermissionDeniedError, match="resume='allow'"):
        store.ingest(key, frames, writer_token=SECOND)
    # The first run goes on, whole, and the refused frames changed nothing.
    result = store.ingest(
        key, first.frames(history_record((s, {"loss": float(s)}) for s in range(5, 7))), writer_token=FIRST
    )
    assert result.accepted
    assert [row["loss"] for row in read_rows(store, key)] == [float(s) for s in range(7)]


def test_a_resume_from_another_run_folder_continues_the_steps_once_the_first_has_ended(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    first = start(store, key, FIRST, steps=range(5))
    assert check_run_id(store, ANONYMOUS, key, SECOND, "allow").verdict is Verdict.LIVE
    store.ingest(key, first.frames(finish_record()), writer_token=FIRST)
    resumable = check_run_id(store, ANONYMOUS, key, SECOND, "must")
    assert resumable.verdict is Verdict.RESUMABLE
    assert resumable.found is not None
    assert resumable.found.last_step == 4
    # The new incarnation numbers its frames from 1 (its own spool) and its steps after the store's.
    start(store, key, SECOND, resume="allow", steps=range(5, 8))
    run = store.get_run(key)
    assert run.state is RunState.RUNNING
    assert run.name == "first-name"
    assert [row["_step"] for row in read_rows(store, key)] == list(range(8))
    # The old incarnation is refused from now on: its writer no longer owns the run.
    with pytest.raises(PermissionDeniedError):
        store.ingest(key, first.frames(history_record([(9, {"loss": 9.0})])), writer_token=FIRST)


def test_a_resume_while_the_first_incarnation_still_runs_is_refused_at_its_start(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    first = start(store, key, FIRST, steps=range(3))
    second = RunWriter(key)
    with pytest.raises(PermissionDeniedError, match="still running"):
        store.ingest(
            key, second.frames(start_record(key, writer_token=SECOND, resume="allow")), writer_token=SECOND
        )
    assert store.ingest(key, first.frames(history_record([(3, {"loss": 3.0})])), writer_token=FIRST).accepted
    assert store.get_run(key).history_rows == 4


def test_a_deleted_runs_id_is_refused_saying_it_was_deleted(store: SqlAlchemyStore, key: RunKey) -> None:
    start(store, key, FIRST)
    delete_runs(store, ANONYMOUS, [key])
    for token, resume in ((FIRST, ""), (SECOND, ""), (SECOND, "allow")):
        verdict = check_run_id(store, ANONYMOUS, key, token, resume)
        assert verdict.verdict is Verdict.DELETED
        assert "belonged to a deleted run" in verdict.message


def test_frames_prove_a_run_alive_and_revive_it_when_it_was_called_crashed(
    store: SqlAlchemyStore, clock: FakeClock, key: RunKey
) -> None:
    writer = start(store, key, FIRST)
    clock.advance(100)
    assert store.mark_crashed(60) == 1
    assert store.get_run(key).state is RunState.CRASHED
    store.ingest(key, writer.frames(history_record([(0, {"loss": 1.0})])), writer_token=FIRST)
    run = store.get_run(key)
    assert run.state is RunState.RUNNING
    assert run.heartbeat_at == clock()
    clock.advance(30)
    assert store.mark_crashed(60) == 0  # the frames 30 s ago count as a heartbeat


def test_a_finished_run_is_not_revived_by_late_frames_of_its_daemon(
    store: SqlAlchemyStore, clock: FakeClock, key: RunKey
) -> None:
    writer = start(store, key, FIRST)
    store.ingest(
        key, writer.frames(finish_record(records_pb2.RUN_STATE_FAILED, exit_code=1)), writer_token=FIRST
    )
    clock.advance(100)
    store.heartbeat([key])
    assert store.get_run(key).state is RunState.FAILED


def test_an_ingest_answer_says_a_stop_is_pending_until_the_run_finishes(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    writer = start(store, key, FIRST)
    result = store.ingest(key, writer.frames(history_record([(0, {"x": 1.0})])), writer_token=FIRST)
    assert not result.stop_requested
    stop_run(store, ANONYMOUS, key)
    result = store.ingest(key, writer.frames(history_record([(1, {"x": 1.0})])), writer_token=FIRST)
    assert result.stop_requested
    result = store.ingest(key, writer.frames(finish_record(records_pb2.RUN_STATE_KILLED)), writer_token=FIRST)
    assert not result.stop_requested
    assert store.get_run(key).state is RunState.KILLED


def test_a_generated_name_another_run_of_the_project_has_is_numbered_past_the_projects_runs(
    store: SqlAlchemyStore,
) -> None:
    for run_id, name, generated in (
        ("one", "calm-river-1", True),
        ("two", "calm-river-1", True),
        ("three", "calm-river-1", False),  # a chosen name is the user's: kept as it is
        ("other", "calm-river-1", True),
    ):
        project = "elsewhere" if run_id == "other" else "names"
        key = RunKey("e", project, run_id)
        record = start_record(key, name=name, name_generated=generated)
        assert store.ingest(key, RunWriter(key).frames(record)).accepted
    names = {run_id: store.get_run(RunKey("e", "names", run_id)).name for run_id in ("one", "two", "three")}
    assert names == {"one": "calm-river-1", "two": "calm-river-2", "three": "calm-river-1"}
    assert store.get_run(RunKey("e", "elsewhere", "other")).name == "calm-river-1"


def test_rows_of_a_take_over_that_start_below_the_stored_steps_are_counted_as_lost_not_dropped_silently(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    first = start(store, key, FIRST, steps=range(5))
    store.ingest(key, first.frames(finish_record()), writer_token=FIRST)
    # A resume that could not ask the store at init() numbers its steps from 0 again.
    start(store, key, SECOND, resume="allow", steps=range(8))
    run = store.get_run(key)
    assert [row["_step"] for row in read_rows(store, key)] == list(range(8))
    assert run.rows_lost == 5
    assert any("5 history rows at or below step 4" in p for p in run.problems)
