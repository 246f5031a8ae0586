"""Run management in the store: edits from the API meet the training process's, delete keeps the id
reserved, a stop request is answered by heartbeats until the run finishes."""

from __future__ import annotations

import json
import math

import pytest
from sqlalchemy import func, select

from tracklog.v1 import records_pb2
from tracklog_server import (
    InvalidInputError,
    PermissionDeniedError,
    RunChanges,
    RunDeletedError,
    RunFilter,
    RunKey,
    RunNotFoundError,
    RunState,
    RunStateError,
    SqlAlchemyStore,
)
from tracklog_server.application._runs import ANONYMOUS, delete_runs, stop_run, update_run
from tracklog_server.storage._models import FileVersionRow, RunRow
from tracklog_server.testing import FakeClock

from .helpers import (
    RunWriter,
    file_records,
    finish_record,
    history_record,
    output_record,
    read_rows,
    start_record,
    summary_record,
    update_record,
)


def started(store: SqlAlchemyStore, key: RunKey, **fields: object) -> RunWriter:
    writer = RunWriter(key)
    assert store.ingest(key, writer.frames(start_record(key, **fields))).accepted
    return writer


def test_an_edit_sets_every_field_and_comes_back_from_get_run(store: SqlAlchemyStore, key: RunKey) -> None:
    started(store, key, name="n0", tags=["a"], config={"lr": 0.1, "old": 1})
    run = update_run(
        store,
        ANONYMOUS,
        key,
        RunChanges(
            name="renamed",
            notes="why this run",
            group="g",
            job_type="train",
            add_tags=("b",),
            config={"lr": 0.2, "nan": math.nan},
            config_removed=("old",),
            summary={"best": 0.97},
        ),
    )
    again = store.get_run(key)
    assert run == again
    assert (again.name, again.notes, again.group, again.job_type) == ("renamed", "why this run", "g", "train")
    assert again.tags == ("a", "b")
    config = json.loads(again.config_json)
    assert config["lr"] == 0.2
    assert math.isnan(config["nan"])
    assert "old" not in config
    assert json.loads(again.summary_json) == {"best": 0.97}


def test_an_edit_of_the_summary_overrides_and_removes_logged_values(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    writer = started(store, key)
    store.ingest(key, writer.frames(history_record([(0, {"loss": 1.0, "acc": 0.5})])))
    update_run(store, ANONYMOUS, key, RunChanges(summary={"loss": 0.25}, summary_removed=("acc",)))
    assert json.loads(store.get_run(key).summary_json) == {"loss": 0.25}


def test_a_tag_added_through_the_api_survives_the_runs_next_tag_change_and_its_end(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    writer = started(store, key, tags=["base"])
    update_run(store, ANONYMOUS, key, RunChanges(add_tags=("tag1",)))
    # The training process knows only its own tags: it sends base + rc, never having seen tag1.
    store.ingest(key, writer.frames(update_record(tags=["base", "rc"])))
    assert store.get_run(key).tags == ("base", "tag1", "rc")
    store.ingest(key, writer.frames(update_record(tags=["rc"]), finish_record()))
    run = store.get_run(key)
    assert run.tags == ("tag1", "rc")
    assert run.state is RunState.FINISHED


def test_a_tag_removed_through_the_api_stays_removed_until_the_run_adds_it_again(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    writer = started(store, key, tags=["a", "b"])
    update_run(store, ANONYMOUS, key, RunChanges(remove_tags=("a",)))
    store.ingest(key, writer.frames(update_record(tags=["a", "b", "c"])))
    assert store.get_run(key).tags == ("b", "c")  # the run did not change "a": the API's removal holds
    store.ingest(key, writer.frames(update_record(tags=["b", "c"])))
    store.ingest(key, writer.frames(update_record(tags=["a", "b", "c"])))
    assert store.get_run(key).tags == ("b", "c", "a")  # the run added it later: the later write wins


def test_the_later_write_wins_for_the_name_whichever_side_wrote_it(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    writer = started(store, key, name="first")
    update_run(store, ANONYMOUS, key, RunChanges(name="from-api"))
    store.ingest(key, writer.frames(update_record(notes="from-run")))
    assert (store.get_run(key).name, store.get_run(key).notes) == ("from-api", "from-run")
    store.ingest(key, writer.frames(update_record(name="from-run")))
    assert store.get_run(key).name == "from-run"
    update_run(store, ANONYMOUS, key, RunChanges(name=""))
    assert store.get_run(key).name == key.id  # an empty name falls back to the id


def test_edits_of_unknown_runs_are_not_found(store: SqlAlchemyStore) -> None:
    with pytest.raises(RunNotFoundError, match="not found"):
        update_run(store, ANONYMOUS, RunKey("e", "p", "nope"), RunChanges(name="x"))


def test_an_edit_past_the_tag_limit_applies_nothing(store: SqlAlchemyStore, key: RunKey) -> None:
    started(store, key, tags=["keep"])
    with pytest.raises(InvalidInputError, match="limit is 1000"):
        update_run(store, ANONYMOUS, key, RunChanges(name="x", add_tags=tuple(f"t{i}" for i in range(1000))))
    run = store.get_run(key)
    assert (run.name, run.tags) == (key.id, ("keep",))


def test_a_deleted_run_is_gone_from_reads_and_lists_but_its_id_stays_reserved(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    writer = started(store, key)
    store.ingest(key, writer.frames(history_record([(0, {"x": 1.0})]), output_record([(1.0, 1, "hi")])))
    assert delete_runs(store, ANONYMOUS, [key]) == 1
    for read in (
        lambda: store.get_run(key),
        lambda: read_rows(store, key),
        lambda: list(store.logs(key)),
        lambda: store.list_files(key),
    ):
        with pytest.raises(RunDeletedError, match=f"run {key} was deleted"):
            read()
    assert store.list_runs(RunFilter(project=key.project)) == []
    # A resend of its frames, or a new run started with its id, is refused: the id stays reserved.
    with pytest.raises(PermissionDeniedError, match="was deleted; its id stays reserved"):
        store.ingest(key, writer.frames(finish_record()))
    with pytest.raises(PermissionDeniedError, match="was deleted"):
        store.ingest(key, RunWriter(key).frames(start_record(key)))
    with pytest.raises(RunDeletedError):
        delete_runs(store, ANONYMOUS, [key])
    with pytest.raises(RunDeletedError):
        update_run(store, ANONYMOUS, key, RunChanges(name="x"))


def test_a_bulk_delete_with_an_unknown_run_deletes_nothing(store: SqlAlchemyStore, key: RunKey) -> None:
    started(store, key)
    with pytest.raises(RunNotFoundError):
        delete_runs(store, ANONYMOUS, [key, RunKey(key.entity, key.project, "missing")])
    assert store.get_run(key).state is RunState.RUNNING
    with pytest.raises(InvalidInputError, match="no runs"):
        delete_runs(store, ANONYMOUS, [])


def test_delete_drops_the_files_only_when_asked(store: SqlAlchemyStore) -> None:
    keep, drop = RunKey("e", "p", "keep"), RunKey("e", "p", "drop")
    for k in (keep, drop):
        writer = started(store, k)
        store.ingest(k, writer.frames(*file_records("model.bin", 1, b"weights")))
    delete_runs(store, ANONYMOUS, [keep], delete_files=False)
    delete_runs(store, ANONYMOUS, [drop], delete_files=True)
    with store.engine.connect() as conn:
        counts = dict(
            conn.execute(
                select(RunRow.run_id, func.count(FileVersionRow.name))
                .join(FileVersionRow, FileVersionRow.run_pk == RunRow.pk, isouter=True)
                .group_by(RunRow.run_id)
            ).all()
        )
    assert counts == {"keep": 1, "drop": 0}


def test_a_stop_is_answered_by_every_heartbeat_until_the_run_finishes(
    store: SqlAlchemyStore, clock: FakeClock
) -> None:
    live, other = RunKey("e", "p", "live"), RunKey("e", "p", "other")
    writer = started(store, live)
    started(store, other)
    assert store.heartbeat([live, other]) == ()
    stop_run(store, ANONYMOUS, live)
    assert store.get_run(live).state is RunState.RUNNING  # a request: the run ends when it reacts
    assert store.heartbeat([live, other]) == (live,)
    assert store.heartbeat([live]) == (live,)  # a daemon that missed the answer hears it again
    store.ingest(live, writer.frames(finish_record(records_pb2.RUN_STATE_KILLED, exit_code=255)))
    assert store.get_run(live).state is RunState.KILLED
    assert store.heartbeat([live, other]) == ()


def test_stopping_a_run_that_is_not_running_is_a_clear_error(store: SqlAlchemyStore, key: RunKey) -> None:
    writer = started(store, key)
    store.ingest(key, writer.frames(finish_record()))
    with pytest.raises(RunStateError, match=f"run {key} is finished, not running"):
        stop_run(store, ANONYMOUS, key)
    assert store.heartbeat([key]) == ()
    with pytest.raises(RunNotFoundError):
        stop_run(store, ANONYMOUS, RunKey("e", "p", "nope"))


def test_a_deleted_run_is_neither_revived_nor_crashed_nor_stopped(
    store: SqlAlchemyStore, clock: FakeClock, key: RunKey
) -> None:
    started(store, key)
    stop_run(store, ANONYMOUS, key)
    delete_runs(store, ANONYMOUS, [key])
    assert store.heartbeat([key]) == ()
    clock.advance(1000)
    assert store.mark_crashed(10) == 0
    with pytest.raises(RunDeletedError):
        stop_run(store, ANONYMOUS, key)


def test_a_summary_edit_is_kept_when_the_run_sets_other_summary_keys(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    writer = started(store, key)
    update_run(store, ANONYMOUS, key, RunChanges(summary={"note": "api"}))
    store.ingest(key, writer.frames(summary_record({"best": 1})))
    assert json.loads(store.get_run(key).summary_json) == {"note": "api", "best": 1}
