"""Reading history back: rows in ascending step order, in pages of complete rows.

Plan, then pages:

1. In one short session: the run's ``_timestamp`` chunks in the step range (one per ingested batch:
   every row's step and time), and, when keys are given, the steps of those keys' chunks, to keep only
   rows where at least one requested key has a value. Then sampling picks rows evenly spaced.
2. Per page, in short sessions: the requested keys' chunks of the batches holding the page's rows,
   restricted to those rows. Queries always name the run, the keys and a ``min_step`` range, so they
   use the index ``(run_pk, key, min_step)`` and never read another key's chunks.

Invariants from ingest relied on here: each key's chunk lies inside one batch's step range (the batch's
``_timestamp`` chunk), its steps are rows of that batch, and chunks of one key never overlap.
Chunks are never modified after they are written, so reading them across several sessions is
consistent with the row set fixed in step 1.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import accumulate, compress

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from tracklog._history import JSON, pack_float64, pack_int64, unpack_float64, unpack_int64
from tracklog._rules import RESERVED_KEYS
from tracklog.v1 import records_pb2
from tracklog_server._entities import ColumnSlice, HistoryPage, HistoryQuery
from tracklog_server._limits import DEFAULT_PAGE_ROWS, MAX_PAGE_BYTES

from ._models import TIMESTAMP_KEY, HistoryChunkRow

# At most this many values are fetched per query while building a page (bounds memory: ~16 MB).
_WINDOW_VALUES = 1_000_000
_WINDOW_RANGES = 64  # step ranges OR-ed into one query
_NO_UPPER = 2**63 - 1

SessionFactory = Callable[[], AbstractContextManager[Session]]


@dataclass(slots=True)
class _Batch:
    """One ingested batch: its step range and its selected rows."""

    min_step: int
    max_step: int
    n: int
    steps: array[int]  # selected rows
    times: array[float]


def read_history(
    sessions: SessionFactory, run_pk: int, all_keys: Sequence[str], query: HistoryQuery
) -> Iterator[HistoryPage]:
    # "_step" and "_timestamp" are part of every row, never columns: asking only for them asks for
    # every row, as asking for nothing does.
    requested = tuple(k for k in dict.fromkeys(query.keys) if k not in RESERVED_KEYS)
    keys = requested or (() if query.keys else tuple(all_keys))
    hi = _NO_UPPER if query.max_step is None else query.max_step
    with sessions() as session:
        batches = _plan(session, run_pk, requested, keys, query.min_step, hi)
    per_row = 16 + 16 * max(1, len(keys))
    page_rows = max(1, min(query.page_rows or DEFAULT_PAGE_ROWS, MAX_PAGE_BYTES // per_row))
    total = sum(len(b.steps) for b in batches)
    if query.samples and total > query.samples:
        ends = list(accumulate(len(b.steps) for b in batches))  # cumulative row counts
        picks = []
        for index in sample_indices(total, query.samples):
            k = bisect_right(ends, index)
            i = index - (ends[k] - len(batches[k].steps))
            picks.append((batches[k], i, i + 1))
        for first in range(0, len(picks), page_rows):
            yield from _pages(sessions, run_pk, keys, picks[first : first + page_rows])
        return
    page: list[tuple[_Batch, int, int]] = []  # (batch, start, stop): slices of selected rows
    count = 0
    for b in batches:
        start = 0
        while start < len(b.steps):
            stop = min(len(b.steps), start + page_rows - count)
            page.append((b, start, stop))
            count += stop - start
            start = stop
            if count == page_rows:
                yield from _pages(sessions, run_pk, keys, page)
                page, count = [], 0
    if page:
        yield from _pages(sessions, run_pk, keys, page)


def sample_indices(n: int, samples: int) -> list[int]:
    """``samples`` indices of ``range(n)``, evenly spaced, the first and the last kept (n > samples)."""
    if samples == 1:
        return [0]
    return [round(i * (n - 1) / (samples - 1)) for i in range(samples)]


def _plan(
    session: Session, run_pk: int, requested: Sequence[str], keys: Sequence[str], lo: int, hi: int
) -> list[_Batch]:
    chunk = HistoryChunkRow
    ts_rows = session.execute(
        select(chunk.min_step, chunk.max_step, chunk.n, chunk.steps, chunk.values)
        .where(chunk.run_pk == run_pk, chunk.key == TIMESTAMP_KEY, chunk.max_step >= lo, chunk.min_step < hi)
        .order_by(chunk.min_step)
    ).all()
    batches: list[_Batch] = []
    for min_step, max_step, n, steps_blob, times_blob in ts_rows:
        steps, times = unpack_int64(steps_blob), unpack_float64(times_blob)
        if min_step < lo or max_step >= hi:
            i, j = bisect_left(steps, lo), bisect_left(steps, hi)
            steps, times = steps[i:j], times[i:j]
        batches.append(_Batch(min_step, max_step, n, steps, times))
    if requested and batches:
        _keep_rows_with_values(session, run_pk, keys, batches)
    return [b for b in batches if b.steps]


def _keep_rows_with_values(session: Session, run_pk: int, keys: Sequence[str], batches: list[_Batch]) -> None:
    chunk = HistoryChunkRow
    present: dict[int, list[tuple[int, bytes]]] = {}  # batch index -> (n, steps) of requested keys
    starts = [b.min_step for b in batches]
    result = session.execute(
        select(chunk.min_step, chunk.n, chunk.steps).where(
            chunk.run_pk == run_pk,
            chunk.key.in_(keys),
            chunk.min_step >= batches[0].min_step,
            chunk.min_step <= batches[-1].max_step,
        )
    )
    for min_step, n, steps_blob in result:
        present.setdefault(bisect_right(starts, min_step) - 1, []).append((n, steps_blob))
    for index, b in enumerate(batches):
        cols = present.get(index)
        if not cols:
            b.steps, b.times = array("q"), array("d")
        elif any(n == b.n for n, _ in cols):
            continue  # a requested key has a value in every row of this batch
        else:
            have: set[int] = set()
            for _, steps_blob in cols:
                have.update(unpack_int64(steps_blob))
            mask = list(map(have.__contains__, b.steps))
            b.steps, b.times = array("q", compress(b.steps, mask)), array("d", compress(b.times, mask))


def _pages(
    sessions: SessionFactory, run_pk: int, keys: Sequence[str], page: list[tuple[_Batch, int, int]]
) -> Iterator[HistoryPage]:
    """One page of rows, or several if its encoding would exceed MAX_PAGE_BYTES (large JSON values)."""
    built = _build_page(sessions, run_pk, keys, page)
    size = len(built.steps) * 2 + sum(
        len(c.steps) + len(c.values) + sum(map(len, c.json_values)) for c in built.columns
    )
    rows = sum(stop - start for _, start, stop in page)
    if size <= MAX_PAGE_BYTES or rows == 1:
        yield built
        return
    half = rows // 2
    left: list[tuple[_Batch, int, int]] = []
    right: list[tuple[_Batch, int, int]] = []
    seen = 0
    for b, start, stop in page:
        if seen + (stop - start) <= half:
            left.append((b, start, stop))
        elif seen >= half:
            right.append((b, start, stop))
        else:
            cut = start + half - seen
            left.append((b, start, cut))
            right.append((b, cut, stop))
        seen += stop - start
    yield from _pages(sessions, run_pk, keys, left)
    yield from _pages(sessions, run_pk, keys, right)


class _Output:
    """The values of one (key, type) on a page, appended chunk by chunk in ascending step order."""

    __slots__ = ("json", "numbers", "steps")

    def __init__(self) -> None:
        self.steps: array[int] = array("q")
        self.numbers: array[float] = array("d")
        self.json: list[str] = []


def _build_page(
    sessions: SessionFactory, run_pk: int, keys: Sequence[str], page: list[tuple[_Batch, int, int]]
) -> HistoryPage:
    steps: array[int] = array("q")
    times: array[float] = array("d")
    wanted: dict[int, _Wanted] = {}
    for b, start, stop in page:
        steps.extend(b.steps[start:stop])
        times.extend(b.times[start:stop])
        entry = wanted.get(b.min_step)
        if entry is None:
            wanted[b.min_step] = _Wanted(b, b.steps[start:stop], dense=True)
        else:  # several slices of one batch: sampled rows
            entry.rows.extend(b.steps[start:stop])
            entry.dense = False
    outputs: dict[tuple[str, int], _Output] = {}
    if keys:
        for window in _windows(list(wanted.values()), len(keys)):
            with sessions() as session:
                _fetch_window(session, run_pk, keys, window, outputs)
    columns = []
    for (key, type_), out in sorted(outputs.items()):
        if type_ == JSON:
            columns.append(ColumnSlice(key, type_, pack_int64(out.steps), b"", tuple(out.json)))
        else:
            columns.append(ColumnSlice(key, type_, pack_int64(out.steps), pack_float64(out.numbers), ()))
    return HistoryPage(pack_int64(steps), pack_float64(times), tuple(columns))


@dataclass(slots=True)
class _Wanted:
    """The rows of one batch on a page. ``dense``: they are one contiguous slice of the batch's
    selected rows, so every value of a requested key between the first and the last is on one of them
    (a requested key's steps are selected rows by construction) and a chunk contributes one slice."""

    batch: _Batch
    rows: array[int]
    dense: bool


def _windows(wanted: list[_Wanted], n_keys: int) -> Iterator[list[_Wanted]]:
    window: list[_Wanted] = []
    values = 0
    for entry in wanted:
        cost = entry.batch.n * n_keys
        if window and (values + cost > _WINDOW_VALUES or len(window) >= _WINDOW_RANGES):
            yield window
            window, values = [], 0
        window.append(entry)
        values += cost
    if window:
        yield window


def _fetch_window(
    session: Session,
    run_pk: int,
    keys: Sequence[str],
    window: list[_Wanted],
    outputs: dict[tuple[str, int], _Output],
) -> None:
    chunk = HistoryChunkRow
    ranges: list[list[int]] = []  # batches adjacent in step order merge into one range
    for entry in window:
        b = entry.batch
        if ranges and ranges[-1][1] + 1 >= b.min_step:
            ranges[-1][1] = b.max_step
        else:
            ranges.append([b.min_step, b.max_step])
    by_start = {entry.batch.min_step: entry for entry in window}
    starts = sorted(by_start)
    result = session.execute(
        select(chunk.key, chunk.col_type, chunk.min_step, chunk.steps, chunk.values)
        .where(
            chunk.run_pk == run_pk,
            chunk.key.in_(keys),
            or_(*(and_(chunk.min_step >= a, chunk.min_step <= z) for a, z in ranges)),
        )
        .order_by(chunk.key, chunk.min_step)
    )
    for key, type_, min_step, steps_blob, values_blob in result:
        # The batch holding this chunk: the last one starting at or before it (ranges hold only
        # batches of this window, adjacent ones merged, so there is always one).
        owner = by_start[starts[bisect_right(starts, min_step) - 1]]
        out = outputs.get((key, type_))
        if out is None:
            out = outputs[(key, type_)] = _Output()
        _extract(unpack_int64(steps_blob), values_blob, type_ == JSON, owner, out)


def _extract(col_steps: array[int], blob: bytes, is_json: bool, entry: _Wanted, out: _Output) -> None:
    """Appends the column's values at the wanted rows of its batch to ``out``."""
    rows = entry.rows
    i, j = bisect_left(col_steps, rows[0]), bisect_right(col_steps, rows[-1])
    if i == j:
        return
    if entry.dense:
        picked: Sequence[int] = range(i, j)
        out.steps.extend(col_steps[i:j])
    else:
        picked = []
        for step in rows:  # sampled rows: few per batch
            k = bisect_left(col_steps, step, i, j)
            if k < j and col_steps[k] == step:
                picked.append(k)
        out.steps.extend(col_steps[k] for k in picked)
    if is_json:
        texts = records_pb2.StringList.FromString(blob).values
        out.json.extend(texts[i:j] if entry.dense else [texts[k] for k in picked])
    else:
        numbers = unpack_float64(blob)
        out.numbers.extend(numbers[i:j] if entry.dense else [numbers[k] for k in picked])
