"""Reading system metrics back: time order, keys, samples, pages, the latest row, and reading only the
requested keys' chunks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection

from tracklog_server import RunKey, RunNotFoundError, SqlAlchemyStore, SystemQuery

from .helpers import RunWriter, history_record, read_system, same, start_record, system_record

T0 = 1_700_000_000.0
NAN = math.nan


@pytest.fixture
def machine_run(store: SqlAlchemyStore, key: RunKey) -> RunKey:
    """10 batches of 3 rows (every 10 s): cpu and memory always, the GPU from the 5th batch on."""
    w = RunWriter(key)
    records = [start_record(key)]
    for b in range(10):
        times = [T0 + 10 * (3 * b + i) for i in range(3)]
        series = {
            "system/cpu": [float(3 * b + i) for i in range(3)],
            "system/memory": [50.0 + b] * 3,
        }
        if b >= 5:
            series["system/gpu.0.gpu"] = [NAN if i == 1 else 90.0 for i in range(3)]
        records.append(system_record(times, series))
        records.append(history_record([(b, {"loss": 1.0})]))  # interleaved with other records
    assert store.ingest(key, w.frames(*records)).accepted
    return key


def test_every_row_comes_back_in_time_order_with_every_key(
    store: SqlAlchemyStore, machine_run: RunKey
) -> None:
    rows = read_system(store, machine_run)
    assert [r["_timestamp"] for r in rows] == [T0 + 10 * i for i in range(30)]
    assert [r["system/cpu"] for r in rows] == [float(i) for i in range(30)]
    assert set(rows[0]) == {"_timestamp", "system/cpu", "system/memory", "system/gpu.0.gpu"}
    # Before the GPU appeared, and where it was not measured, its value is NaN.
    gpu = [r["system/gpu.0.gpu"] for r in rows]
    assert all(math.isnan(v) for v in gpu[:15])
    assert all(same(a, b) for a, b in zip(gpu[15:18], [90.0, NAN, 90.0], strict=True))


def test_requested_keys_select_the_rows_of_batches_that_have_them(
    store: SqlAlchemyStore, machine_run: RunKey
) -> None:
    rows = read_system(store, machine_run, keys=("system/gpu.0.gpu",))
    assert [r["_timestamp"] for r in rows] == [T0 + 10 * i for i in range(15, 30)]
    assert set(rows[0]) == {"_timestamp", "system/gpu.0.gpu"}
    both = read_system(store, machine_run, keys=("system/memory", "system/gpu.0.gpu", "system/nope"))
    assert len(both) == 30
    assert set(both[0]) == {"_timestamp", "system/memory", "system/gpu.0.gpu"}
    assert read_system(store, machine_run, keys=("system/nope",)) == []


def test_samples_are_evenly_spaced_and_keep_the_first_and_last_rows(
    store: SqlAlchemyStore, machine_run: RunKey
) -> None:
    rows = read_system(store, machine_run, samples=4)
    assert [r["system/cpu"] for r in rows] == [0.0, 10.0, 19.0, 29.0]  # round(i * 29 / 3)
    gpu = read_system(store, machine_run, keys=("system/gpu.0.gpu",), samples=3)
    assert [r["_timestamp"] for r in gpu] == [T0 + 150, T0 + 220, T0 + 290]
    assert len(read_system(store, machine_run, samples=100)) == 30
    assert [r["_timestamp"] for r in read_system(store, machine_run, samples=1)] == [T0]


def test_a_batch_that_arrives_out_of_time_order_is_merged_into_place(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    store.ingest(
        key,
        w.frames(
            start_record(key),
            system_record([100.0, 130.0], {"system/cpu": [1.0, 4.0]}),
            system_record([110.0, 120.0], {"system/cpu": [2.0, 3.0]}),  # the clock was stepped back
            system_record([140.0], {"system/cpu": [5.0]}),
        ),
    )
    rows = read_system(store, key)
    assert [(r["_timestamp"], r["system/cpu"]) for r in rows] == [
        (100.0, 1.0),
        (110.0, 2.0),
        (120.0, 3.0),
        (130.0, 4.0),
        (140.0, 5.0),
    ]
    assert [r["system/cpu"] for r in read_system(store, key, samples=3)] == [1.0, 3.0, 5.0]


def test_pages_stay_under_the_message_size_and_hold_every_row_once(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    keys = [f"system/cpu.{c}.cpu_percent" for c in range(100)]
    w = RunWriter(key)
    records = [start_record(key)]
    for b in range(10):
        times = [T0 + 500 * b + i for i in range(500)]
        records.append(system_record(times, {k: [float(j + 500 * b) for j in range(500)] for k in keys}))
    store.ingest(key, w.frames(*records))
    pages = list(store.system_history(key, SystemQuery()))
    sizes = [len(p.timestamps) // 8 for p in pages]
    assert sum(sizes) == 5000
    assert len(sizes) > 1
    for p in pages:
        assert len(p.timestamps) + sum(len(s.values) for s in p.series) <= 3 * 1024 * 1024
        assert [s.key for s in p.series] == sorted(keys)
    rows = read_system(store, key, keys=(keys[42],))
    assert [r[keys[42]] for r in rows] == [float(i) for i in range(5000)]


def test_the_latest_row_has_the_last_value_of_each_key(store: SqlAlchemyStore, machine_run: RunKey) -> None:
    snapshot = store.latest_system_metrics(machine_run)
    assert snapshot is not None
    assert snapshot.time == T0 + 290
    assert dict(snapshot.values) == {"system/cpu": 29.0, "system/gpu.0.gpu": 90.0, "system/memory": 59.0}


def test_a_run_without_system_metrics_has_no_rows_and_no_latest_row(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    store.ingest(key, RunWriter(key).frames(start_record(key)))
    assert read_system(store, key) == []
    assert read_system(store, key, keys=("system/cpu",), samples=5) == []
    assert store.latest_system_metrics(key) is None


def test_an_unknown_run_is_not_found(store: SqlAlchemyStore) -> None:
    missing = RunKey("alice", "mnist", "nope")
    with pytest.raises(RunNotFoundError, match="alice/mnist/nope not found"):
        store.system_history(missing, SystemQuery())
    with pytest.raises(RunNotFoundError):
        store.latest_system_metrics(missing)


@pytest.fixture
def statements(store: SqlAlchemyStore) -> Iterator[list[tuple[str, Any]]]:
    calls: list[tuple[str, Any]] = []

    def record(conn: Connection, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        calls.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    yield calls
    event.remove(store.engine, "before_cursor_execute", record)


def test_reading_one_key_reads_only_that_keys_chunks_and_the_row_times(
    store: SqlAlchemyStore, machine_run: RunKey, statements: list[tuple[str, Any]]
) -> None:
    read_system(store, machine_run, keys=("system/memory",))
    reads = [(s, p) for s, p in statements if "system_chunks" in s]
    assert reads
    for statement, parameters in reads:
        values = parameters.values() if isinstance(parameters, dict) else parameters
        named = {p for p in values if isinstance(p, str)}
        assert named <= {"system/memory", "_timestamp"}, statement
        assert "run_pk =" in statement, statement
