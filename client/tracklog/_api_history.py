"""Reading a run's history back as wandb users do: ``history()`` (sampled; a pandas DataFrame when
pandas is installed) and ``scan_history()`` (every row, page by page, as dicts).

The store sends history as columns (``HistoryBatch``: the rows' steps and times, then one column per
key with its own steps). A DataFrame is built from those columns directly, one array per key and
page, never through a dict per row. pandas (and numpy, which it brings) are imported only when a
DataFrame is asked for: ``import tracklog`` stays light, and pandas is not a dependency of the SDK.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tracklog import _history
from tracklog.v1 import records_pb2, store_pb2

if TYPE_CHECKING:
    from tracklog._api import ApiRun

RESERVED = ("_step", "_timestamp", "_runtime")
STREAMS = ("default", "system")


def check_keys(keys: Sequence[str] | None) -> list[str]:
    if keys is None:
        return []
    if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
        raise TypeError("keys must be a list of str, not " + ("a str" if isinstance(keys, str) else "that"))
    return list(dict.fromkeys(keys))


def _positive(name: str, value: int | None, *, none_ok: bool) -> int:
    if value is None and none_ok:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive int or None" if none_ok else "a positive int"
        raise ValueError(f"{name} must be {allowed}, not {value!r}")
    return value


def pandas_module() -> Any | None:
    """pandas when it is installed, else None (imported on first use only)."""
    try:
        return importlib.import_module("pandas")
    except ImportError:
        return None


def history(
    run: ApiRun,
    samples: int | None = 500,
    keys: Sequence[str] | None = None,
    x_axis: str = "_step",
    pandas: bool = True,
    stream: str = "default",
) -> Any:
    """See ``ApiRun.history``."""
    wanted = check_keys(keys)
    samples = _positive("samples", samples, none_ok=True)
    if not isinstance(x_axis, str) or not x_axis:
        raise ValueError(f"x_axis must be a key, not {x_axis!r}")
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {', '.join(map(repr, STREAMS))}, not {stream!r}")
    pd = pandas_module() if pandas else None
    if stream == "system":
        system = _system_batches(run, wanted, samples)
        if pd is not None:
            return _system_frame(pd, system, run.start_time)
        return list(_system_rows(system, run.start_time))
    if wanted and x_axis not in wanted:
        wanted.append(x_axis)  # every row's x value comes with it
    request = store_pb2.HistoryRequest(
        ref=run._view.ref, keys=[k for k in wanted if k not in RESERVED], samples=samples
    )
    batches = run._api._history(request, f"history of {run.path}")
    if pd is not None:
        frame = _history_frame(pd, batches, run.start_time)
        if x_axis not in RESERVED:
            frame = frame[frame[x_axis].notna()] if x_axis in frame else frame.iloc[0:0]
        return frame.reset_index(drop=True)
    rows = decode(batches, run.start_time)
    if x_axis not in RESERVED:
        rows = (row for row in rows if x_axis in row)
    return list(rows)


def scan_history(
    run: ApiRun,
    keys: Sequence[str] | None = None,
    page_size: int = 1000,
    min_step: int | None = None,
    max_step: int | None = None,
) -> Iterator[dict[str, Any]]:
    """See ``ApiRun.scan_history``. Checks its arguments at the call, then streams."""
    wanted = check_keys(keys)
    page_size = _positive("page_size", page_size, none_ok=False)
    for name, value in (("min_step", min_step), ("max_step", max_step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    lo = max(0, min_step or 0)
    if max_step is not None and max_step <= lo:
        return iter(())  # an empty range (the store reads max_step 0 as "no upper bound")
    request = store_pb2.HistoryRequest(
        ref=run._view.ref,
        keys=[k for k in wanted if k not in RESERVED],
        min_step=lo,
        max_step=max_step or 0,
        page_rows=page_size,
    )
    rows = decode(run._api._history(request, f"history of {run.path}"), run.start_time)
    if not wanted:
        return rows
    # The store sends rows where any of the keys has a value; a scan keeps rows that have them all.
    return (row for row in rows if all(k in row for k in wanted))


def decode(batches: Iterable[records_pb2.HistoryBatch], start: float) -> Iterator[dict[str, Any]]:
    for row in _history.decode_rows(batches):
        row["_runtime"] = row["_timestamp"] - start
        yield row


# -- DataFrames from columns -----------------------------------------------------------------------


class _Columns:
    """Per key, one array per page (None where the page lacks the key), concatenated at the end."""

    def __init__(self, np: Any) -> None:
        self.np = np
        self.lengths: list[int] = []
        self.parts: dict[str, list[Any]] = {}

    def page(self, n: int, columns: dict[str, Any]) -> None:
        for key, values in columns.items():
            self.parts.setdefault(key, [None] * len(self.lengths)).append(values)
        for key, parts in self.parts.items():
            if key not in columns:
                parts.append(None)
        self.lengths.append(n)

    def _filled(self, parts: list[Any], empty: Callable[[int], Any]) -> list[Any]:
        return [empty(n) if p is None else p for p, n in zip(parts, self.lengths, strict=True)]

    def arrays(self) -> dict[str, Any]:
        np = self.np
        out = {}
        for key, parts in self.parts.items():
            kinds = {p.dtype.kind for p in parts if p is not None}
            if "O" in kinds:
                filled = self._filled(parts, lambda n: np.full(n, None, dtype=object))
                out[key] = np.concatenate([p.astype(object) for p in filled])
            elif "f" in kinds or any(p is None for p in parts):
                filled = self._filled(parts, lambda n: np.full(n, np.nan))
                out[key] = np.concatenate([p.astype(np.float64) for p in filled])
            else:
                out[key] = np.concatenate(parts)
        return out


def _history_frame(pd: Any, batches: Iterable[records_pb2.HistoryBatch], start: float) -> Any:
    np = importlib.import_module("numpy")  # pandas brings it
    steps_parts, time_parts = [], []
    columns = _Columns(np)
    for batch in batches:
        steps = np.frombuffer(batch.steps, dtype="<i8")
        steps_parts.append(steps)
        time_parts.append(np.frombuffer(batch.timestamps, dtype="<f8"))
        page: dict[str, Any] = {}
        for column in batch.columns:
            values, where = _column_array(np, batch, column, steps)
            old = page.get(column.key)
            if old is not None:
                # A key whose values changed type within a batch comes as two columns, their steps
                # disjoint: one array of objects holds both.
                old = old.astype(object)
                old[where] = values.astype(object)[where]
                values = old
            page[column.key] = values
        columns.page(len(steps), page)
    step = np.concatenate(steps_parts) if steps_parts else np.zeros(0, dtype=np.int64)
    times = np.concatenate(time_parts) if time_parts else np.zeros(0, dtype=np.float64)
    data = {"_step": step, "_runtime": times - start, "_timestamp": times}
    data.update(sorted(columns.arrays().items()))
    return pd.DataFrame(data)


def _column_array(
    np: Any, batch: records_pb2.HistoryBatch, column: records_pb2.Column, steps: Any
) -> tuple[Any, Any]:
    """The column's values on every row of the page, and the rows it has values in (a slice or an
    index array). Ints stay ints when the key has a value in every row; missing values are NaN
    (numbers) or None (JSON values)."""
    n = len(steps)
    values: Any
    if column.type == _history.JSON:
        values = np.empty(len(column.json_values), dtype=object)
        values[:] = _history.column_values(column)
    else:
        values = np.frombuffer(column.values, dtype="<f8")
        if column.type == _history.INT and np.isfinite(values).all():
            values = values.astype(np.int64)
    if column.all_rows or len(values) == n:  # steps are a subset of the page's: all of them
        return values, slice(None)
    where = np.searchsorted(steps, np.frombuffer(column.steps, dtype="<i8"))
    out = np.full(n, None, dtype=object) if values.dtype.kind == "O" else np.full(n, np.nan)
    out[where] = values
    return out, where


# -- the system stream -----------------------------------------------------------------------------


def _system_batches(run: ApiRun, keys: list[str], samples: int) -> list[records_pb2.SystemBatch]:
    request = store_pb2.SystemHistoryRequest(
        ref=run._view.ref, keys=[k for k in keys if k not in RESERVED], samples=samples
    )
    return list(run._api._stream("SystemHistory", request, f"system metrics of {run.path}"))


def _system_frame(pd: Any, batches: Sequence[records_pb2.SystemBatch], start: float) -> Any:
    np = importlib.import_module("numpy")
    columns = _Columns(np)
    time_parts = []
    for batch in batches:
        times = np.frombuffer(batch.timestamps, dtype="<f8")
        time_parts.append(times)
        columns.page(len(times), {s.key: np.frombuffer(s.values, dtype="<f8") for s in batch.series})
    times = np.concatenate(time_parts) if time_parts else np.zeros(0, dtype=np.float64)
    data = {"_runtime": times - start, "_timestamp": times}
    data.update(sorted(columns.arrays().items()))
    return pd.DataFrame(data)


def _system_rows(batches: Sequence[records_pb2.SystemBatch], start: float) -> Iterator[dict[str, Any]]:
    for batch in batches:
        times = _history.unpack_float64(batch.timestamps)
        page: list[dict[str, Any]] = [{"_timestamp": t, "_runtime": t - start} for t in times]
        for series in batch.series:
            for row, value in zip(page, _history.unpack_float64(series.values), strict=True):
                if not math.isnan(value):  # NaN: not measured at that time
                    row[series.key] = value
        yield from page
