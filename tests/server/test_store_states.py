"""Run states: heartbeats, crash detection with a fake clock, several detectors, listing runs."""

from __future__ import annotations

import threading

import pytest

from tracklog.v1 import records_pb2
from tracklog_server import RunFilter, RunKey, RunState, SqlAlchemyStore
from tracklog_server.application._crash import CrashDetector
from tracklog_server.testing import FakeClock

from .conftest import PostgresDatabases
from .helpers import RunWriter, finish_record, start_record

TIMEOUT = 60.0


def started(store: SqlAlchemyStore, *ids: str, project: str = "p") -> list[RunKey]:
    keys = [RunKey("e", project, i) for i in ids]
    for k in keys:
        assert store.ingest(k, RunWriter(k).frames(start_record(k, name=f"name-{k.id}"))).accepted
    return keys


def test_a_run_without_heartbeats_is_marked_crashed_after_the_timeout(
    store: SqlAlchemyStore, clock: FakeClock
) -> None:
    (key,) = started(store, "r1")
    detector = CrashDetector(store, TIMEOUT)
    clock.advance(TIMEOUT - 1)
    assert detector.check_once() == 0
    assert store.get_run(key).state is RunState.RUNNING
    clock.advance(2)
    assert detector.check_once() == 1
    assert store.get_run(key).state is RunState.CRASHED
    assert detector.check_once() == 0


def test_heartbeats_keep_a_run_running_and_revive_a_crashed_one(
    store: SqlAlchemyStore, clock: FakeClock
) -> None:
    a, b = started(store, "a", "b")
    detector = CrashDetector(store, TIMEOUT)
    clock.advance(TIMEOUT / 2)
    store.heartbeat([a])
    clock.advance(TIMEOUT / 2 + 1)
    assert detector.check_once() == 1
    assert (store.get_run(a).state, store.get_run(b).state) == (RunState.RUNNING, RunState.CRASHED)
    store.heartbeat([b, RunKey("e", "p", "unknown")])
    run = store.get_run(b)
    assert (run.state, run.heartbeat_at) == (RunState.RUNNING, clock())


def test_a_finished_run_is_never_revived_by_a_heartbeat(store: SqlAlchemyStore, clock: FakeClock) -> None:
    (key,) = started(store, "done")
    store.ingest(key, [(2, finish_record())])
    before = store.get_run(key)
    clock.advance(TIMEOUT * 2)
    assert CrashDetector(store, TIMEOUT).check_once() == 0
    store.heartbeat([key])
    after = store.get_run(key)
    assert (after.state, after.heartbeat_at) == (RunState.FINISHED, before.heartbeat_at)


def test_a_run_that_finished_crashed_stays_crashed_on_heartbeats(
    store: SqlAlchemyStore, clock: FakeClock
) -> None:
    (key,) = started(store, "vanished")
    store.ingest(key, [(2, finish_record(records_pb2.RUN_STATE_CRASHED))])
    store.heartbeat([key])
    assert store.get_run(key).state is RunState.CRASHED


@pytest.mark.postgres
def test_two_detectors_on_one_postgresql_database_mark_each_run_once(
    postgres_databases: PostgresDatabases, clock: FakeClock
) -> None:
    url = postgres_databases.create()
    stores = [SqlAlchemyStore(url, clock=clock) for _ in range(2)]
    try:
        started(stores[0], *[f"run{i}" for i in range(200)])
        clock.advance(TIMEOUT + 1)
        detectors = [CrashDetector(s, TIMEOUT) for s in stores]
        barrier = threading.Barrier(len(detectors))
        counts: list[int] = []

        def run(detector: CrashDetector) -> None:
            barrier.wait()
            counts.append(detector.check_once())

        threads = [threading.Thread(target=run, args=(d,)) for d in detectors]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(counts) == 200
        runs = stores[1].list_runs(RunFilter(project="p"))
        assert {r.state for r in runs} == {RunState.CRASHED}
    finally:
        for s in stores:
            s.close()


def test_runs_are_listed_by_project_state_and_order(store: SqlAlchemyStore, clock: FakeClock) -> None:
    keys = []
    for i, name in enumerate(["charlie", "alpha", "bravo"]):
        k = RunKey("e", "p", f"r{i}")
        store.ingest(k, RunWriter(k).frames(start_record(k, name=name, start_time=1000.0 + i)))
        keys.append(k)
    started(store, "elsewhere", project="q")
    store.ingest(keys[1], [(2, finish_record())])
    newest_first = store.list_runs(RunFilter(entity="e", project="p"))
    assert [r.name for r in newest_first] == ["bravo", "alpha", "charlie"]
    assert [r.name for r in store.list_runs(RunFilter(project="p", order="name"))] == [
        "alpha",
        "bravo",
        "charlie",
    ]
    assert [r.name for r in store.list_runs(RunFilter(project="p", order="created_at", limit=2))] == [
        "charlie",
        "alpha",
    ]
    assert [r.name for r in store.list_runs(RunFilter(project="p", state=RunState.FINISHED))] == ["alpha"]
    assert len(store.list_runs(RunFilter())) == 4
