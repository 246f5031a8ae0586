"""Concurrent writers on one database: every frame is applied once, whatever the interleaving."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tracklog_server import RunKey, SqlAlchemyStore
from tracklog_server.testing import FakeClock

from .helpers import RunWriter, history_record, read_rows, start_record


def run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def wrap(target: Callable[[], None]) -> None:
        barrier.wait()
        try:
            target()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_stores_sending_the_same_frames_at_once_apply_them_once(
    db_url: str, clock: FakeClock, key: RunKey
) -> None:
    frames = RunWriter(key).frames(
        start_record(key),
        *(history_record([(s, {"x": float(s)}) for s in range(i * 10, i * 10 + 10)]) for i in range(20)),
    )
    stores = [SqlAlchemyStore(db_url, clock=clock) for _ in range(2)]
    try:

        def send(store: SqlAlchemyStore) -> Callable[[], None]:
            def go() -> None:
                for i in range(0, len(frames), 3):  # both replicas race from the first frame on
                    assert store.ingest(key, frames[i : i + 3]).accepted

            return go

        assert run_threads([send(s) for s in stores]) == []
        run = stores[0].get_run(key)
        assert (run.last_seq, run.history_rows) == (21, 200)
        assert [r["x"] for r in read_rows(stores[1], key)] == [float(s) for s in range(200)]
    finally:
        for s in stores:
            s.close()


def test_writers_of_different_runs_do_not_fail_each_other(store: SqlAlchemyStore) -> None:
    keys = [RunKey("e", "p", f"run{i}") for i in range(6)]

    def write(key: RunKey) -> Callable[[], None]:
        def go() -> None:
            w = RunWriter(key)
            assert store.ingest(key, w.frames(start_record(key))).accepted
            for i in range(10):
                assert store.ingest(key, w.frames(history_record([(i, {"v": float(i)})]))).accepted

        return go

    assert run_threads([write(k) for k in keys]) == []
    assert {store.get_run(k).history_rows for k in keys} == {10}
