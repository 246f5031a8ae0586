"""Chart series for the web app: a run's history or system metrics, downsampled to the points asked for.

A chart is a few hundred to a few thousand pixels wide, a run may hold millions of rows: sending every
point wastes the network and the browser's time, and evenly spaced samples hide spikes. So the x range
is cut into equal-width buckets (about one per pixel pair) and each bucket keeps the points holding its
minimum and its maximum (and the series keeps its first and last point): a spike anywhere survives, and
the line drawn from these points covers the same vertical extent per pixel as the full series. When the
points of the range fit in what was asked, they are all sent and marked ``exact`` (zooming in to a
short range gets the true points).

Values are read whole, column by column (``AbstractStore.history_columns``: each key's steps and
float64 values as numpy arrays, joined from the chunks as stored) and bucketed with numpy, never as
row dicts: a million rows of ten keys are one query per key and about two passes over each.

x for history: ``_step``, ``_timestamp`` (unix seconds) or ``_runtime`` (seconds since the run's start);
for system metrics: seconds since the run's start. NaN values of history are kept (the chart shows a
gap: y is None); system metrics' NaN means "not measured" and is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tracklog_server._entities import RunKey, SystemQuery
from tracklog_server._errors import InvalidInputError
from tracklog_server.storage._store import AbstractStore

from ._runs import Caller

X_KEYS = ("_step", "_timestamp", "_runtime")
TIMESTAMP = "_timestamp"  # the column of every row's time
MIN_POINTS = 4  # one bucket's minimum and maximum, and the first and last point
MAX_POINTS = 20_000  # per series; a 4K screen is 3840 pixels wide
MAX_KEYS = 100  # per request
DEFAULT_POINTS = 1000
# Buckets of at least this many points on average are scanned one by one (argmin, argmax); shorter
# ones by whole-series passes. Measured: 1M points in 500 buckets, 2 ms a key against 13 ms;
# 20,000 points in 10,000 buckets, 12 ms against 43 ms the other way round.
_LOOP_FROM = 16

Floats = npt.NDArray[np.float64]

# A request's keys are read and downsampled two at a time: SQLite's reads and numpy's passes release
# the GIL, so on two cores a 1M-row x 10-key chart answers in about 60% of the time. Shared by all
# requests: a busy server queues keys here rather than running more threads than it has cores.
_WORKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tracklog-charts")


@dataclass(frozen=True, slots=True)
class Series:
    """One key's points in ascending x. ``y`` holds None where the value is NaN or infinite (JSON has
    no such numbers; the run's summary tells them). ``exact``: every point of the range is here."""

    x: list[float]
    y: list[float | None]
    exact: bool


@dataclass(frozen=True, slots=True)
class Chart:
    x_key: str
    series: dict[str, Series]


def check_request(keys: Sequence[str], points: int, lo: float | None, hi: float | None) -> None:
    if len(keys) > MAX_KEYS:
        raise InvalidInputError(f"{len(keys)} keys in one request; the limit is {MAX_KEYS}")
    if not MIN_POINTS <= points <= MAX_POINTS:
        raise InvalidInputError(f"points must be between {MIN_POINTS} and {MAX_POINTS}, not {points}")
    for name, bound in (("min", lo), ("max", hi)):
        if bound is not None and not math.isfinite(bound):
            raise InvalidInputError(f"{name} must be a finite number")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidInputError(f"min ({lo:g}) is above max ({hi:g})")


def downsample(x: Floats, y: Floats, points: int) -> tuple[Floats, Floats, bool]:
    """At most ``points`` of the (x ascending) series: all of them (exact) when they fit, else per
    equal-width x bucket the first point holding the bucket's minimum and the first holding its maximum
    (NaN ignored; an all-NaN bucket keeps its first point), plus the first and last point.

    Each bucket is one slice and one argmin and argmax over it: the series is read about twice, where
    masks over the whole series (value == its bucket's min) read it a dozen times; a million points
    take a few milliseconds."""
    if points < MIN_POINTS:
        raise ValueError(f"points must be at least {MIN_POINTS}")
    n = len(x)
    if n <= points:
        return x, y, True
    buckets = max(1, (points - 2) // 2)
    lo, hi = float(x[0]), float(x[-1])
    if hi > lo:
        inner = lo + (hi - lo) * (np.arange(1, buckets, dtype=np.float64) / buckets)
        starts = np.unique(np.concatenate(([0], np.searchsorted(x, inner, side="left"))))
        starts = starts[starts < n]
    else:
        starts = np.zeros(1, dtype=np.intp)  # every point at one x: one bucket
    ends = np.append(starts[1:], n)
    if n < _LOOP_FROM * len(starts):
        return _downsample_masks(x, y, starts, ends)
    nan = np.isnan(y)
    has_nan = bool(nan.any())
    # NaN never wins: it becomes +inf for the minimum and -inf for the maximum.
    low = np.where(nan, np.inf, y) if has_nan else y
    high = np.where(nan, -np.inf, y) if has_nan else y
    picked = [0, n - 1]
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        i = start + int(np.argmin(low[start:end]))  # argmin and argmax give the first of equals
        j = start + int(np.argmax(high[start:end]))
        if has_nan:
            i = _not_nan(y, nan, start, end, i, np.min)
            j = _not_nan(y, nan, start, end, j, np.max)
        picked += (i, j)
    keep = np.unique(np.array(picked, dtype=np.intp))
    return x[keep], y[keep], False


def _downsample_masks(
    x: Floats, y: Floats, starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
) -> tuple[Floats, Floats, bool]:
    """``downsample`` for many short buckets: whole-series passes (the value equal to its bucket's
    min or max), where a Python loop over thousands of buckets would cost more than the passes."""
    n = len(x)
    segment = np.repeat(np.arange(len(starts)), ends - starts)
    nan = np.isnan(y)
    low = np.where(nan, np.inf, y)
    high = np.where(nan, -np.inf, y)
    mins = np.minimum.reduceat(low, starts)
    maxs = np.maximum.reduceat(high, starts)
    keep = [
        _first_where((low == mins[segment]) & ~nan, starts, ends),
        _first_where((high == maxs[segment]) & ~nan, starts, ends),
        np.array([0, n - 1]),
    ]
    picked = np.unique(np.concatenate(keep))
    return x[picked], y[picked], False


def _first_where(
    mask: npt.NDArray[np.bool_], starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]
) -> npt.NDArray[np.intp]:
    """Per segment [start, end): the first index where ``mask`` holds, or the segment's start when it
    holds nowhere (an all-NaN bucket keeps one point, so the chart shows the gap)."""
    hits = np.flatnonzero(mask)
    if len(hits) == 0:
        return starts
    pos = np.searchsorted(hits, starts, side="left")
    candidate = hits[np.minimum(pos, len(hits) - 1)]
    found = (pos < len(hits)) & (candidate < ends)
    return np.where(found, candidate, starts)


def _not_nan(y: Floats, nan: npt.NDArray[np.bool_], start: int, end: int, index: int, extreme: Any) -> int:
    """``index`` unless it is a NaN standing in for an infinity while the bucket holds real values
    (every real value +inf, say): then the first real value equal to the bucket's extreme."""
    if not nan[index]:
        return index
    real = np.flatnonzero(~nan[start:end])
    if len(real) == 0:
        return start  # all NaN: the bucket's first point, so the chart shows the gap
    values = y[start:end][real]
    return start + int(real[int(np.flatnonzero(values == extreme(values))[0])])


def _series(x: Floats, y: Floats, points: int, lo: float | None, hi: float | None) -> Series:
    if lo is not None or hi is not None:
        i = 0 if lo is None else int(np.searchsorted(x, lo, side="left"))
        j = len(x) if hi is None else int(np.searchsorted(x, hi, side="right"))
        x, y = x[i:j], y[i:j]
    x, y, exact = downsample(x, y, points)
    ys: list[float | None] = [v if math.isfinite(v) else None for v in y.tolist()]
    return Series(x.tolist(), ys, exact)


def history_chart(
    store: AbstractStore,
    caller: Caller,
    key: RunKey,
    keys: Sequence[str],
    *,
    x_key: str = "_step",
    points: int = DEFAULT_POINTS,
    lo: float | None = None,
    hi: float | None = None,
) -> Chart:
    """The run's history of ``keys`` (none: every numeric key) against ``x_key``."""
    if x_key not in X_KEYS:
        raise InvalidInputError(f"x must be one of {', '.join(X_KEYS)}, not {x_key!r}")
    check_request(keys, points, lo, hi)
    run = store.get_run(key)
    wanted = [k for k in dict.fromkeys(keys) if k not in X_KEYS] or [m.key for m in run.metrics]
    lo_step, hi_step = 0, None
    if x_key == "_step" and (lo is not None or hi is not None):
        # The store cuts by step itself (min inclusive, max exclusive), reading only that range.
        lo_step = max(0, math.ceil(lo)) if lo is not None else 0
        hi_step = max(0, math.floor(hi) + 1) if hi is not None else None
    none: tuple[npt.NDArray[np.int64], Floats] = (np.zeros(0, np.int64), np.zeros(0, np.float64))
    all_steps, all_times = none
    if x_key != "_step":
        all_steps, all_times = store.history_columns(key, [TIMESTAMP], lo_step, hi_step).get(TIMESTAMP, none)

    def one(k: str) -> tuple[str, Series]:
        s, y = store.history_columns(key, [k], lo_step, hi_step).get(k, none)
        if x_key == "_step":
            x = s.astype(np.float64)
        else:
            # Every row has a time: a key's steps are rows, found in the time column's steps.
            at = np.minimum(np.searchsorted(all_steps, s), max(0, len(all_times) - 1))
            x = all_times[at] if len(all_times) else np.zeros(len(s))
            if x_key == "_runtime":
                x = x - run.created_at
            if len(x) > 1 and np.any(x[1:] < x[:-1]):  # a clock stepped back: chart in x order
                order = np.argsort(x, kind="stable")
                x, y = x[order], y[order]
        return k, _series(x, y, points, lo, hi)

    return Chart(x_key, dict(_WORKERS.map(one, wanted)))


def system_chart(
    store: AbstractStore,
    caller: Caller,
    key: RunKey,
    keys: Sequence[str],
    *,
    points: int = DEFAULT_POINTS,
    lo: float | None = None,
    hi: float | None = None,
) -> Chart:
    """The run's system metrics (``keys``, none: all) against seconds since the run's start."""
    check_request(keys, points, lo, hi)
    run = store.get_run(key)
    times: list[bytes] = []
    pieces: dict[str, list[tuple[int, bytes]]] = {}  # key -> (first row, values) per page
    total = 0
    for page in store.system_history(key, SystemQuery(keys=tuple(dict.fromkeys(keys)))):
        for s in page.series:
            pieces.setdefault(s.key, []).append((total, s.values))
        times.append(page.timestamps)
        total += len(page.timestamps) // 8
    x_all = np.frombuffer(b"".join(times), dtype="<f8") - run.created_at
    series: dict[str, Series] = {}
    for k, parts in sorted(pieces.items()):
        y = np.full(total, np.nan)  # a page without the key: not measured on its rows
        for first, blob in parts:
            page_values = np.frombuffer(blob, dtype="<f8")
            y[first : first + len(page_values)] = page_values
        measured = ~np.isnan(y)
        series[k] = _series(x_all[measured], y[measured], points, lo, hi)
    return Chart("_runtime", series)
