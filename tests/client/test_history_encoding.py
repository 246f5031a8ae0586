"""The columnar history encoding gives back exactly the rows it was given, whatever their shapes."""

from __future__ import annotations

import math
import random
from typing import Any

from tracklog._history import BatchBuilder, decode_rows
from tracklog.v1 import records_pb2


def _round_trip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    builder = BatchBuilder()
    for step, row in enumerate(rows):
        builder.add(step * 2, 1000.0 + step, row)
    batch = records_pb2.HistoryBatch.FromString(builder.encode())
    return [{k: v for k, v in row.items() if not k.startswith("_")} for row in decode_rows([batch])]


def test_rows_with_the_same_keys_round_trip_with_their_types() -> None:
    rows = [{"loss": 1.0 / (i + 1), "epoch": i, "tag": f"t{i}", "flag": i % 2 == 0} for i in range(50)]
    assert _round_trip(rows) == rows
    assert all(type(r["epoch"]) is int for r in _round_trip(rows))


def test_a_column_that_mixes_ints_floats_and_none_keeps_each_value() -> None:
    rows = [{"v": 1}, {"v": 2.5}, {"v": None}, {"v": 2**60}, {"v": math.inf}]
    out = _round_trip(rows)
    assert [type(r["v"]) for r in out] == [int, float, type(None), int, float]
    assert [r["v"] for r in out] == [1, 2.5, None, 2**60, math.inf]


def test_rows_with_the_same_keys_share_the_batch_steps_instead_of_repeating_them() -> None:
    rows = [{"loss": 0.5 / (i + 1), "epoch": i, "tag": "a"} for i in range(100)]
    builder = BatchBuilder()
    for step, row in enumerate(rows):
        builder.add(step, 1000.0 + step, row)
    batch = records_pb2.HistoryBatch.FromString(builder.encode())
    assert len(builder) == 100
    shared = {col.key: col.all_rows for col in batch.columns if not col.steps}
    assert shared == {"loss": True, "epoch": True}
    assert all(len(col.values) == 8 * 100 for col in batch.columns if col.all_rows)
    assert [c.key for c in batch.columns if c.type == records_pb2.COLUMN_TYPE_JSON] == ["tag"]


def test_rows_with_the_same_keys_in_another_order_round_trip() -> None:
    rows = [{"a": 1.0, "b": 2.0}, {"b": 4.0, "a": 3.0}, {"a": 5.0, "b": 6.0}]
    assert _round_trip(rows) == rows


def test_a_key_missing_from_one_row_keeps_its_own_steps() -> None:
    rows = [{"a": 1.0, "b": 2.0}, {"a": 3.0, "c": 4.0}, {"a": 5.0, "b": 6.0}]
    assert _round_trip(rows) == rows
    assert _round_trip([{}, {}]) == [{}, {}]
    assert _round_trip([{"only": 1.5}, {"only": 2}]) == [{"only": 1.5}, {"only": 2}]


def test_rows_with_varying_keys_round_trip() -> None:
    rng = random.Random(7)
    keys = ["a", "b", "c", "d"]
    rows = [{k: rng.choice([1.5, 2, "x"]) for k in keys if rng.random() < 0.6} for _ in range(200)]
    assert _round_trip(rows) == rows


def test_last_values_are_those_of_the_last_row_holding_each_key() -> None:
    builder = BatchBuilder()
    builder.add(0, 1.0, {"a": 1.0, "b": 2})
    builder.add(1, 2.0, {"a": 3.0})
    assert builder.last_values() == {"a": 3.0, "b": 2}


def test_a_sparkline_series_keeps_evenly_spaced_values_however_it_is_fed() -> None:
    from array import array

    from tracklog._sparkline import Series

    whole, chunked = Series(width=8), Series(width=8)
    whole.extend(array("d", range(1000)))
    for start in range(0, 1000, 37):
        chunked.extend(array("d", range(start, min(start + 37, 1000))))
    assert whole.values == chunked.values
    assert len(whole.values) < 16
    strides = {b - a for a, b in zip(whole.values, whole.values[1:], strict=False)}
    assert len(strides) == 1
    assert whole.values[0] == 0
