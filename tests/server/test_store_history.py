"""Reading history back: keys, samples, step ranges, paging, and touching only the requested keys."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection

from tracklog.v1 import records_pb2
from tracklog_server import HistoryQuery, RunKey, RunNotFoundError, SqlAlchemyStore

from .helpers import RunWriter, history_record, pages_to_batches, read_rows, same, start_record

TIME0 = 1_700_000_000.0


def ingest_rows(
    store: SqlAlchemyStore, key: RunKey, rows: list[tuple[int, dict[str, Any]]], batch: int
) -> None:
    w = RunWriter(key)
    records = [start_record(key)] + [history_record(rows[i : i + batch]) for i in range(0, len(rows), batch)]
    assert store.ingest(key, w.frames(*records)).accepted


@pytest.fixture
def sparse_run(store: SqlAlchemyStore, key: RunKey) -> RunKey:
    """100 rows: "loss" every row, "val" every 10th, "img" (JSON) at steps 5 and 50."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for s in range(100):
        row: dict[str, Any] = {"loss": 100.0 - s}
        if s % 10 == 0:
            row["val"] = s * 2
        if s in (5, 50):
            row["img"] = {"path": f"media/{s}.png"}
        rows.append((s, row))
    ingest_rows(store, key, rows, batch=16)
    return key


def test_every_row_comes_back_in_step_order_with_all_keys(store: SqlAlchemyStore, sparse_run: RunKey) -> None:
    rows = read_rows(store, sparse_run)
    assert [r["_step"] for r in rows] == list(range(100))
    assert rows[0] == {"_step": 0, "_timestamp": TIME0, "loss": 100.0, "val": 0}
    assert rows[5] == {"_step": 5, "_timestamp": TIME0 + 5, "loss": 95.0, "img": {"path": "media/5.png"}}
    assert isinstance(rows[10]["val"], int)


def test_requested_keys_select_the_rows_where_they_have_a_value(
    store: SqlAlchemyStore, sparse_run: RunKey
) -> None:
    rows = read_rows(store, sparse_run, keys=("val",))
    assert rows == [{"_step": s, "_timestamp": TIME0 + s, "val": s * 2} for s in range(0, 100, 10)]
    both = read_rows(store, sparse_run, keys=("val", "img"))
    assert [r["_step"] for r in both] == [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert all("loss" not in r for r in both)
    assert read_rows(store, sparse_run, keys=("missing",)) == []


def test_samples_are_evenly_spaced_and_keep_the_first_and_last_rows(
    store: SqlAlchemyStore, sparse_run: RunKey
) -> None:
    rows = read_rows(store, sparse_run, samples=5)
    assert [r["_step"] for r in rows] == [0, 25, 50, 74, 99]  # round(i * 99 / 4)
    assert rows[2]["img"] == {"path": "media/50.png"}
    val = read_rows(store, sparse_run, keys=("val",), samples=4)
    assert [r["_step"] for r in val] == [0, 30, 60, 90]
    assert len(read_rows(store, sparse_run, samples=500)) == 100


def test_a_step_range_limits_the_rows(store: SqlAlchemyStore, sparse_run: RunKey) -> None:
    rows = read_rows(store, sparse_run, min_step=15, max_step=42)
    assert [r["_step"] for r in rows] == list(range(15, 42))
    assert [r["_step"] for r in read_rows(store, sparse_run, keys=("val",), min_step=15, max_step=42)] == [
        20,
        30,
        40,
    ]


def test_pages_hold_complete_rows_up_to_page_rows(store: SqlAlchemyStore, sparse_run: RunKey) -> None:
    pages = list(store.history(sparse_run, HistoryQuery(page_rows=7)))
    batches = pages_to_batches(pages)
    sizes = [len(b.steps) // 8 for b in batches]
    assert sizes == [7] * 14 + [2]
    for batch in batches:  # each page's columns lie within its rows
        row_steps = set(memoryview(batch.steps).cast("q").tolist())
        for col in batch.columns:
            assert set(memoryview(col.steps).cast("q").tolist()) <= row_steps
    sampled = list(store.history(sparse_run, HistoryQuery(samples=10, page_rows=3)))
    assert [len(p.steps) // 8 for p in sampled] == [3, 3, 3, 1]


def test_nan_and_inf_survive_the_round_trip(store: SqlAlchemyStore, key: RunKey) -> None:
    values = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, 5e-324]
    ingest_rows(store, key, [(i, {"x": v}) for i, v in enumerate(values)], batch=3)
    got = [r["x"] for r in read_rows(store, key)]
    assert all(same(a, b) for a, b in zip(got, values, strict=True))
    assert math.copysign(1.0, got[4]) == -1.0


def test_history_of_an_unknown_run_is_not_found(store: SqlAlchemyStore) -> None:
    with pytest.raises(RunNotFoundError, match="alice/mnist/nope not found"):
        store.history(RunKey("alice", "mnist", "nope"), HistoryQuery())


def test_a_large_run_reads_back_exactly(store: SqlAlchemyStore, key: RunKey) -> None:
    rows = [(s, {f"k{j}": float(s * j) for j in range(10)}) for s in range(20_000)]
    ingest_rows(store, key, rows, batch=1000)
    got = read_rows(store, key)
    assert len(got) == 20_000
    assert got[12_345] == {
        "_step": 12_345,
        "_timestamp": TIME0 + 12_345,
        **{f"k{j}": 12_345.0 * j for j in range(10)},
    }
    pages = list(store.history(key, HistoryQuery(keys=("k3",))))
    assert [len(p.steps) // 8 for p in pages] == [10_000, 10_000]


class StatementLog:
    """The SQL statements and parameters a store issues (a SQLAlchemy engine event)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, conn: Connection, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        self.calls.append((statement, parameters))

    def history_reads(self) -> list[tuple[str, Any]]:
        return [
            (s, p) for s, p in self.calls if s.lstrip().upper().startswith("SELECT") and "history_chunks" in s
        ]


@pytest.fixture
def statements(store: SqlAlchemyStore) -> Iterator[StatementLog]:
    log = StatementLog()
    event.listen(store.engine, "before_cursor_execute", log)
    yield log
    event.remove(store.engine, "before_cursor_execute", log)


def _params(parameters: Any) -> list[Any]:
    return list(parameters.values()) if isinstance(parameters, dict) else list(parameters)


def test_reading_one_key_of_a_run_with_many_keys_reads_only_that_keys_chunks(
    store: SqlAlchemyStore, key: RunKey, statements: StatementLog, backend: str
) -> None:
    rows = [(s, {f"key{j:02d}": float(s + j) for j in range(40)}) for s in range(3000)]
    ingest_rows(store, key, rows, batch=500)
    statements.calls.clear()
    got = read_rows(store, key, keys=("key07",))
    assert [r["key07"] for r in got] == [float(s + 7) for s in range(3000)]
    reads = statements.history_reads()
    assert reads, "history was read without touching history_chunks?"
    for statement, parameters in reads:
        named = {p for p in _params(parameters) if isinstance(p, str)}
        assert named <= {"key07", "_timestamp"}, statement
        assert re.search(r'"?key"? (=|IN)', statement), statement
        assert "run_pk =" in statement, statement
    if backend == "sqlite":
        with store.engine.connect() as conn:
            for statement, parameters in reads:
                plan = " ".join(
                    str(row[-1])
                    for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                )
                assert "ix_history_chunks_run_key_min_step" in plan, plan


def test_the_chunks_fetched_do_not_grow_with_the_number_of_keys(
    store: SqlAlchemyStore, key: RunKey, statements: StatementLog
) -> None:
    rows = [(s, {f"key{j:02d}": float(s) for j in range(30)}) for s in range(1000)]
    ingest_rows(store, key, rows, batch=100)  # 10 batches of 30 keys: 310 chunks with the timestamps
    statements.calls.clear()
    pages = list(store.history(key, HistoryQuery(keys=("key03",))))
    assert sum(len(p.steps) // 8 for p in pages) == 1000
    fetched = 0
    with store.engine.connect() as conn:
        for statement, parameters in statements.history_reads():  # re-run each read, counting its rows
            fetched += conn.exec_driver_sql(
                f"SELECT count(*) FROM ({statement}) AS q", parameters
            ).scalar_one()
        total = conn.execute(text("SELECT count(*) FROM history_chunks")).scalar_one()
    assert total == 310
    # Per batch: its timestamp chunk, and the key03 chunk twice (its steps to select the rows, then
    # its values for the page). None of the other 29 keys.
    assert fetched == 10 + 10 + 10


def test_json_columns_keep_their_exact_text(store: SqlAlchemyStore, key: RunKey) -> None:
    batch = records_pb2.HistoryBatch(
        steps=b"".join(s.to_bytes(8, "little") for s in (0, 1)),
        timestamps=b"\x00" * 16,
        columns=[
            records_pb2.Column(
                key="j", type=records_pb2.COLUMN_TYPE_JSON,
                steps=b"".join(s.to_bytes(8, "little") for s in (0, 1)),
                json_values=['{"b":1,"a":NaN}', '"caf\\u00e9"'],
            )
        ],
    )  # fmt: skip
    record = records_pb2.Record(history=batch.SerializeToString()).SerializeToString()
    store.ingest(key, RunWriter(key).frames(start_record(key), record))
    (page,) = store.history(key, HistoryQuery())
    (col,) = page.columns
    assert col.json_values == ('{"b":1,"a":NaN}', '"caf\\u00e9"')


def test_asking_only_for_step_or_timestamp_returns_every_row_without_columns(
    store: SqlAlchemyStore, sparse_run: RunKey
) -> None:
    rows = read_rows(store, sparse_run, keys=("_step", "_timestamp"))
    assert rows[:2] == [{"_step": 0, "_timestamp": TIME0}, {"_step": 1, "_timestamp": TIME0 + 1}]
    assert len(rows) == 100
    assert read_rows(store, sparse_run, keys=("_step", "val"))[1] == {
        "_step": 10,
        "_timestamp": TIME0 + 10,
        "val": 20,
    }


def test_whole_columns_for_charts_hold_every_step_and_value_in_any_range(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    """history_columns (what charts read): "every" is logged at each step (its chunks are contiguous
    and send no steps), "odd" at odd steps, "gappy" at every step but a hole at 40-59; batches of 17
    rows, so chunks are cut by every range below."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for s in range(3, 120):
        row: dict[str, Any] = {"every": s * 0.5}
        if s % 2:
            row["odd"] = -s
        if not 40 <= s < 60:
            row["gappy"] = float(s) if s != 77 else math.nan
        rows.append((s, row))
    ingest_rows(store, key, rows, batch=17)
    expected = {k: [(s, float(r[k])) for s, r in rows if k in r] for k in ("every", "odd", "gappy")}
    bounds = [0, 3, 4, 16, 19, 20, 39, 40, 41, 59, 60, 77, 78, 119, 120, 500]
    for lo in bounds:
        for hi in [None, *bounds]:
            got = store.history_columns(key, ["every", "odd", "gappy", "missing"], lo, hi)
            for k, points in expected.items():
                want = [(s, v) for s, v in points if s >= lo and (hi is None or s < hi)]
                if not want:
                    assert k not in got, (k, lo, hi)
                    continue
                steps, values = got[k]
                assert steps.tolist() == [s for s, _v in want], (k, lo, hi)
                assert np.array_equal(values, [v for _s, v in want], equal_nan=True), (k, lo, hi)
            assert "missing" not in got
