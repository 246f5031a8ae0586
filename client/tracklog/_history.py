"""Columnar encoding of history rows (``tracklog.v1.HistoryBatch``) and decoding back to rows.

The training process turns committed rows into one column per key (steps and values as packed
little-endian arrays) in its background thread. The server stores each column as it came, so reading
one key of a long run touches only that key's bytes; readers merge columns back into rows by step.
"""

from __future__ import annotations

import json
import math
import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

from tracklog.v1 import records_pb2

_LITTLE = sys.byteorder == "little"
FLOAT = records_pb2.COLUMN_TYPE_FLOAT
INT = records_pb2.COLUMN_TYPE_INT
JSON = records_pb2.COLUMN_TYPE_JSON


def pack_int64(values: array[int]) -> bytes:
    if not _LITTLE:  # pragma: no cover - every supported platform is little-endian
        values = array("q", values)
        values.byteswap()
    return values.tobytes()


def pack_float64(values: array[float]) -> bytes:
    if not _LITTLE:  # pragma: no cover
        values = array("d", values)
        values.byteswap()
    return values.tobytes()


def unpack_int64(data: bytes) -> array[int]:
    out = array("q")
    out.frombytes(data)
    if not _LITTLE:  # pragma: no cover
        out.byteswap()
    return out


def unpack_float64(data: bytes) -> array[float]:
    out = array("d")
    out.frombytes(data)
    if not _LITTLE:  # pragma: no cover
        out.byteswap()
    return out


def dumps(value: Any) -> str:
    """JSON text for a logged or config value; NaN and Infinity are kept (Python's json extension)."""
    return json.dumps(value, allow_nan=True, separators=(",", ":"))


class _Numeric:
    __slots__ = ("steps", "values")

    def __init__(self, steps: array[int] | None = None, values: array[float] | None = None) -> None:
        self.steps: array[int] = array("q") if steps is None else steps
        self.values: array[float] = array("d") if values is None else values


class _Json:
    __slots__ = ("steps", "values")

    def __init__(self) -> None:
        self.steps: array[int] = array("q")
        self.values: list[str] = []


class BatchBuilder:
    """Collects committed rows and encodes them as one HistoryBatch.

    Rows must arrive in strictly ascending step order (the SDK's step rules guarantee it). Values are
    already normalised by ``Run.log``: float, int, or anything JSON-encodable.

    ``add``/``extend`` only keep the rows; columns are built once, when the batch is read. The usual
    training loop logs the same keys every row: then the rows are transposed without a Python loop
    over rows or cells (``itemgetter`` and ``chain`` flatten them row-major, a strided list slice
    cuts out each column, ``set(map(type, ...))`` types it and ``array`` packs it), and each column
    is marked ``all_rows`` instead of repeating the batch's steps. Any other batch, or a column of
    mixed types, goes cell by cell.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._rows: list[tuple[int, float, Mapping[str, Any]]] = []
        self.steps: array[int] = array("q")
        self.times: array[float] = array("d")
        self._dense: list[tuple[str, int, array[float], Sequence[Any]]] = []  # key, type, packed, values
        self._floats: dict[str, _Numeric] = {}
        self._ints: dict[str, _Numeric] = {}
        self._json: dict[str, _Json] = {}
        self._last: dict[str, Any] = {}
        self._built = False

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, step: int, timestamp: float, row: Mapping[str, Any]) -> None:
        assert not self._built, "reset() a built batch before adding to it"
        self._rows.append((step, timestamp, row))

    def extend(self, rows: Iterable[tuple[int, float, Mapping[str, Any]]]) -> None:
        """Adds ``(step, timestamp, row)`` items, as ``Run.log`` queues them."""
        assert not self._built, "reset() a built batch before adding to it"
        self._rows.extend(rows)

    def _build(self) -> None:
        if self._built:
            return
        self._built = True
        if not self._rows:
            return
        steps, times, rows = zip(*self._rows, strict=True)
        self.steps, self.times = array("q", steps), array("d", times)
        keys = tuple(rows[0])
        cells = _row_major(rows, keys)
        if cells is None:
            for step, row in zip(steps, rows, strict=True):
                for key, value in row.items():
                    self._add_cell(key, step, value)
            self._last_from_columns()
        else:
            self._build_dense(keys, cells)
            self._last = dict(zip(keys, cells[len(cells) - len(keys) :], strict=True))

    def _build_dense(self, keys: tuple[str, ...], cells: list[Any]) -> None:
        """Columns of rows that all hold exactly ``keys``; ``cells`` is their values, row-major."""
        width = len(keys)
        all_floats = set(map(type, cells)) == {float}  # the usual case: no check per column
        for j, key in enumerate(keys):
            values = cells[j::width]
            column_kinds = {float} if all_floats else set(map(type, values))
            if column_kinds == {float}:
                self._dense.append((key, FLOAT, array("d", values), values))
            elif column_kinds == {int} and min(values) >= -(2**53) and max(values) <= 2**53:
                self._dense.append((key, INT, array("d", values), values))
            else:
                for step, value in zip(self.steps, values, strict=True):
                    self._add_cell(key, step, value)

    def _add_cell(self, key: str, step: int, value: Any) -> None:
        kind = type(value)
        if kind is float:
            col = self._floats.get(key)
            if col is None:
                col = self._floats[key] = _Numeric()
        elif kind is int and -(2**53) <= value <= 2**53:
            col = self._ints.get(key)
            if col is None:
                col = self._ints[key] = _Numeric()
        else:
            jcol = self._json.get(key)
            if jcol is None:
                jcol = self._json[key] = _Json()
            jcol.steps.append(step)
            jcol.values.append(dumps(value))
            return
        col.steps.append(step)
        col.values.append(value)

    def _last_from_columns(self) -> None:
        latest: dict[str, tuple[int, Any]] = {}
        for kind, cols in ((float, self._floats), (int, self._ints)):
            for key, col in cols.items():
                step, value = col.steps[-1], col.values[-1]
                if key not in latest or latest[key][0] < step:
                    latest[key] = (step, kind(value))
        for key, jcol in self._json.items():
            if key not in latest or latest[key][0] < jcol.steps[-1]:
                latest[key] = (jcol.steps[-1], json.loads(jcol.values[-1]))
        self._last = {key: value for key, (_, value) in latest.items()}

    def last_values(self) -> dict[str, Any]:
        """The value of each key at its last step in this batch (for the SDK's local summary)."""
        self._build()
        return dict(self._last)

    def numeric_columns(self) -> Iterator[tuple[str, Sequence[float]]]:
        """Each numeric key's values in step order (a key logged as both int and float yields its
        int values and its float values separately)."""
        self._build()
        for key, _, _, values in self._dense:
            yield key, values
        for cols in (self._floats, self._ints):
            for key, col in cols.items():
                yield key, col.values

    def encode(self) -> bytes:
        self._build()
        batch = records_pb2.HistoryBatch(steps=pack_int64(self.steps), timestamps=pack_float64(self.times))
        add = batch.columns.add
        for key, type_, packed, _ in self._dense:
            add(key=key, type=type_, values=pack_float64(packed), all_rows=True)
        for type_, cols in ((FLOAT, self._floats), (INT, self._ints)):
            for key, col in cols.items():
                add(key=key, type=type_, steps=pack_int64(col.steps), values=pack_float64(col.values))
        for key, jcol in self._json.items():
            add(key=key, type=JSON, steps=pack_int64(jcol.steps), json_values=jcol.values)
        return batch.SerializeToString()


def _row_major(rows: Sequence[Mapping[str, Any]], keys: tuple[str, ...]) -> list[Any] | None:
    """Every row's values in the order of ``keys``, row after row, or None unless each row holds
    exactly those keys. C loops only: the rows of a training loop are many and alike."""
    width = len(keys)
    if set(map(len, rows)) != {width}:
        return None
    if width == 0:
        return []
    # itemgetter of one key returns the value itself, of several a tuple to flatten.
    cells = map(itemgetter(*keys), rows) if width == 1 else chain.from_iterable(map(itemgetter(*keys), rows))
    try:
        # Same length and every key found: the same set of keys (the order may differ).
        return list(cells)
    except KeyError:
        return None


def column_steps(batch: records_pb2.HistoryBatch, column: records_pb2.Column) -> array[int]:
    """The steps of ``column``: its own, or the batch's when it has a value in every row."""
    return unpack_int64(batch.steps if column.all_rows else column.steps)


def column_values(column: records_pb2.Column) -> list[Any]:
    """The Python values of one column, in step order."""
    if column.type == JSON:
        return [json.loads(text) for text in column.json_values]
    values = unpack_float64(column.values)
    if column.type == INT:
        return [int(v) if math.isfinite(v) else v for v in values]
    return list(values)


def decode_rows(batches: Iterable[records_pb2.HistoryBatch]) -> Iterator[dict[str, Any]]:
    """Rows ``{"_step", "_timestamp", key: value ...}`` from batches of complete rows, in step order.

    Keys without a value at a step are absent from that row.
    """
    for batch in batches:
        steps = unpack_int64(batch.steps)
        times = unpack_float64(batch.timestamps)
        rows: dict[int, dict[str, Any]] = {
            step: {"_step": step, "_timestamp": ts} for step, ts in zip(steps, times, strict=True)
        }
        for column in batch.columns:
            for step, value in zip(column_steps(batch, column), column_values(column), strict=True):
                row = rows.get(step)
                if row is not None:
                    row[column.key] = value
        yield from rows.values()
