"""Edits from the training process and the API meet by write time: per field (per tag, per config and
summary key) the later write wins, however late the training process's record reaches the store."""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracklog.v1 import records_pb2
from tracklog_server import (
    InvalidInputError,
    RunChanges,
    RunDeletedError,
    RunKey,
    RunNotFoundError,
    SqlAlchemyStore,
)
from tracklog_server.application._runs import ANONYMOUS, delete_runs, update_run, update_runs
from tracklog_server.testing import FakeClock

from .helpers import RunWriter, refusal, start_record

T0 = 1_700_000_000.0


def timed_update(t: float, tags: list[str] | None = None, **fields: str) -> bytes:
    update = records_pb2.RunUpdate(write_time=t, **fields)
    if tags is not None:
        update.tags.SetInParent()  # an empty list is a list too: "no tags left"
        update.tags.values.extend(tags)
    return records_pb2.Record(update=update).SerializeToString()


def timed_config(t: float, items: dict[str, object]) -> bytes:
    config = records_pb2.ConfigUpdate(items_json=json.dumps(items), write_time=t)
    return records_pb2.Record(config=config).SerializeToString()


def timed_summary(t: float, items: dict[str, object], removed: tuple[str, ...] = ()) -> bytes:
    summary = records_pb2.SummaryUpdate(items_json=json.dumps(items), removed=removed, write_time=t)
    return records_pb2.Record(summary=summary).SerializeToString()


def started(store: SqlAlchemyStore, key: RunKey, **fields: object) -> RunWriter:
    writer = RunWriter(key)
    assert store.ingest(key, writer.frames(start_record(key, start_time=T0, **fields))).accepted
    return writer


def test_a_late_record_of_an_older_rename_does_not_undo_a_newer_api_rename(
    store: SqlAlchemyStore, key: RunKey, clock: FakeClock
) -> None:
    writer = started(store, key, name="first")
    clock.advance(10)
    update_run(store, ANONYMOUS, key, RunChanges(name="from-api", notes="api notes"))
    clock.advance(10)
    # Made before the API's edit (an offline spool synced late): it loses the name, and the notes.
    store.ingest(key, writer.frames(timed_update(T0 + 5, name="from-run", notes="run notes", group="g")))
    run = store.get_run(key)
    assert (run.name, run.notes, run.group) == ("from-api", "api notes", "g")
    # Made after it: it wins.
    store.ingest(key, writer.frames(timed_update(T0 + 15, name="renamed-later")))
    assert store.get_run(key).name == "renamed-later"


def test_a_tag_the_api_removed_is_not_brought_back_by_an_older_add_but_by_a_newer_one(
    store: SqlAlchemyStore, key: RunKey, clock: FakeClock
) -> None:
    writer = started(store, key, tags=["base"])
    clock.advance(10)
    update_run(store, ANONYMOUS, key, RunChanges(remove_tags=("rc",), add_tags=("api",)))
    clock.advance(10)
    store.ingest(key, writer.frames(timed_update(T0 + 5, tags=["base", "rc"])))
    assert store.get_run(key).tags == ("base", "api")
    # The process writes only what changes in its own list: here it removes rc, then adds it again.
    store.ingest(key, writer.frames(timed_update(T0 + 12, tags=["base"]), timed_update(T0 + 13, tags=["rc"])))
    assert store.get_run(key).tags == ("api", "rc")


def test_config_and_summary_items_meet_per_key(store: SqlAlchemyStore, key: RunKey, clock: FakeClock) -> None:
    writer = started(store, key, config={"lr": 0.1, "bs": 32})
    clock.advance(10)
    update_run(store, ANONYMOUS, key, RunChanges(config={"lr": 0.2}, summary={"best": 0.9}))
    clock.advance(10)
    store.ingest(
        key,
        writer.frames(
            timed_config(T0 + 5, {"lr": 0.05, "bs": 64}),
            timed_summary(T0 + 5, {"best": 0.5, "epochs": 3}),
        ),
    )
    run = store.get_run(key)
    assert json.loads(run.config_json) == {"lr": 0.2, "bs": 64}
    assert json.loads(run.summary_json) == {"best": 0.9, "epochs": 3}
    store.ingest(key, writer.frames(timed_summary(T0 + 15, {}, removed=("best",))))
    assert json.loads(store.get_run(key).summary_json) == {"epochs": 3}


def test_a_client_clock_ahead_of_the_store_counts_as_the_records_arrival(
    store: SqlAlchemyStore, key: RunKey, clock: FakeClock
) -> None:
    writer = started(store, key)
    store.ingest(key, writer.frames(timed_update(T0 + 3600, name="from-the-future")))
    assert store.get_run(key).name == "from-the-future"
    clock.advance(1)
    update_run(store, ANONYMOUS, key, RunChanges(name="from-api"))  # a second after it arrived
    assert store.get_run(key).name == "from-api"


def test_a_record_without_a_write_time_counts_at_its_arrival(
    store: SqlAlchemyStore, key: RunKey, clock: FakeClock
) -> None:
    writer = started(store, key)
    update_run(store, ANONYMOUS, key, RunChanges(name="from-api"))
    clock.advance(1)
    store.ingest(key, writer.frames(timed_update(0.0, name="older-sdk")))
    assert store.get_run(key).name == "older-sdk"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_a_record_with_a_broken_write_time_is_refused_alone(
    store: SqlAlchemyStore, key: RunKey, bad: float
) -> None:
    writer = started(store, key)
    result = store.ingest(key, writer.frames(timed_update(bad, name="x"), timed_update(T0, notes="kept")))
    assert "write_time must be a finite, non-negative unix time" in refusal(result, 2)
    run = store.get_run(key)
    assert (run.name, run.notes) == (key.id, "kept")


def test_a_bulk_edit_tags_and_moves_many_runs_in_one_call(store: SqlAlchemyStore) -> None:
    keys = [RunKey("e", "p", f"r{i}") for i in range(3)]
    for k in keys:
        started(store, k, tags=["old"])
    assert update_runs(store, ANONYMOUS, keys, RunChanges(add_tags=("new",), remove_tags=("old",))) == 3
    assert update_runs(store, ANONYMOUS, [*keys, keys[0]], RunChanges(group="sweep-1")) == 3
    for k in keys:
        run = store.get_run(k)
        assert (run.tags, run.group) == (("new",), "sweep-1")


def test_a_bulk_edit_with_an_unknown_or_deleted_run_applies_nothing(store: SqlAlchemyStore) -> None:
    live, gone = RunKey("e", "p", "live"), RunKey("e", "p", "gone")
    started(store, live)
    started(store, gone)
    delete_runs(store, ANONYMOUS, [gone])
    with pytest.raises(RunNotFoundError, match="e/p/missing"):
        update_runs(store, ANONYMOUS, [live, RunKey("e", "p", "missing")], RunChanges(add_tags=("x",)))
    with pytest.raises(RunDeletedError, match="e/p/gone"):
        update_runs(store, ANONYMOUS, [live, gone], RunChanges(add_tags=("x",)))
    with pytest.raises(InvalidInputError, match="no runs"):
        update_runs(store, ANONYMOUS, [], RunChanges(add_tags=("x",)))
    assert store.get_run(live).tags == ()


def test_a_bulk_edit_past_a_runs_tag_limit_names_that_run_and_applies_nothing(store: SqlAlchemyStore) -> None:
    small, full = RunKey("e", "p", "small"), RunKey("e", "p", "full")
    started(store, small)
    started(store, full, tags=[f"t{i}" for i in range(1000)])
    with pytest.raises(InvalidInputError, match="run e/p/full: the run would have 1001 tags"):
        update_runs(store, ANONYMOUS, [small, full], RunChanges(add_tags=("one-more",)))
    assert store.get_run(small).tags == ()


# -- the property: whatever the arrival order, the latest write of each field wins ---------------------

# One write: (time offset, side, field, value). Times are distinct, so "latest" is unambiguous.
_writes = st.lists(
    st.tuples(
        st.sampled_from(["api", "run"]),
        st.sampled_from(["name", "notes", "tag:a", "tag:b", "config:lr"]),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=_writes, delays=st.lists(st.integers(0, 12), min_size=12, max_size=12))
def test_the_latest_write_of_each_field_wins_whatever_order_the_records_arrive_in(
    tmp_path: Path, writes: list[tuple[str, str, int]], delays: list[int]
) -> None:
    """The training process's records reach the store in their own order, each some writes late
    (``delays``); API edits apply at once, at the store's clock. Either way the store ends with
    each field as its latest write left it."""
    clock = FakeClock(T0)
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'p.db'}", clock=clock)
    try:
        key = RunKey("e", "p", secrets.token_hex(4))
        writer = started(store, key)
        expected: dict[str, object] = {}
        run_tags: set[str] = set()  # the process's own tag list
        in_flight: list[tuple[int, bytes]] = []  # the process's records: (due index, record)
        for i, (side, field, value) in enumerate(writes):
            clock.advance(1)
            t = clock()
            kind, _, item = field.partition(":")
            if kind == "tag":
                present = value % 2 == 0  # even: the tag is added, odd: removed
                # Unless the process's own list stays the same: then it writes nothing of the tag.
                if side == "api" or (item in run_tags) != present:
                    expected[field] = present
            else:
                expected[field] = f"v{value}" if kind != "config" else value
            if side == "api":
                tag_change = {"add_tags" if value % 2 == 0 else "remove_tags": (item,)}
                changes = {
                    "name": RunChanges(name=f"v{value}"),
                    "notes": RunChanges(notes=f"v{value}"),
                    "config": RunChanges(config={"lr": value}),
                    "tag": RunChanges(**tag_change),  # type: ignore[arg-type]
                }[kind]
                update_run(store, ANONYMOUS, key, changes)
            else:
                if kind == "tag":
                    (run_tags.add if value % 2 == 0 else run_tags.discard)(item)
                    record = timed_update(t, tags=sorted(run_tags))
                elif kind == "config":
                    record = timed_config(t, {"lr": value})
                else:
                    record = timed_update(t, **{kind: f"v{value}"})
                due = max([i + delays[i], *(d for d, _ in in_flight)])  # never overtakes an earlier one
                in_flight.append((due, record))
            while in_flight and in_flight[0][0] <= i:
                store.ingest(key, writer.frames(in_flight.pop(0)[1]))
        clock.advance(1)
        for _, record in in_flight:
            store.ingest(key, writer.frames(record))
        run = store.get_run(key)
        assert run.name == expected.get("name", key.id)
        assert run.notes == expected.get("notes", "")
        assert json.loads(run.config_json).get("lr") == expected.get("config:lr")
        for tag in ("a", "b"):
            assert (tag in run.tags) == expected.get(f"tag:{tag}", False), (tag, run.tags)
    finally:
        store.close()
