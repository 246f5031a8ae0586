"""Reading system metrics back: rows in ascending time, in pages, and the latest row.

Plan, then pages, as for history (``_history_read``):

1. In one short session: the run's ``_timestamp`` chunks (every row's time, per batch) and, when keys
   are given, the seqs of the batches holding one of them: only those batches' rows are returned.
   Rows are put in time order (batches normally arrive in time order; a batch that overlaps an
   earlier one, e.g. after a clock step, is merged by a stable sort), then sampled.
2. Per page, in short sessions: the requested keys' chunks of the page's batches. Queries name the
   run, the keys (unless every key is wanted) and seq ranges, so they use the primary key
   ``(run_pk, seq, key)`` and never read another key's values. Batches that are adjacent among the
   selected ones share one range; at most ``_WINDOW_RANGES`` ranges go into one query.

A key with no chunk in a batch reads as NaN on that batch's rows (as a value that was not measured).
Chunks are never modified after they are written, so reading them across sessions is consistent.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from tracklog._history import pack_float64, unpack_float64
from tracklog_server._entities import SystemPage, SystemSeriesSlice, SystemSnapshot
from tracklog_server._limits import DEFAULT_PAGE_ROWS, MAX_PAGE_BYTES

from ._history_read import sample_indices
from ._models import TIMESTAMP_KEY, SystemChunkRow

SessionFactory = Callable[[], AbstractContextManager[Session]]

_WINDOW_RANGES = 64  # seq ranges OR-ed into one query

_Chunk = SystemChunkRow


@dataclass(slots=True)
class _Rows:
    """Selected rows in output order: each row's time, its batch (seq) and its index in the batch."""

    times: array[float]
    seqs: array[int]
    index: array[int]

    def take(self, positions: Sequence[int]) -> _Rows:
        return _Rows(
            array("d", (self.times[i] for i in positions)),
            array("q", (self.seqs[i] for i in positions)),
            array("q", (self.index[i] for i in positions)),
        )


def read_system(
    sessions: SessionFactory, run_pk: int, keys: Sequence[str], every_key: bool, samples: int
) -> Iterator[SystemPage]:
    """Pages of ``keys`` (the run's keys when ``every_key``; else the requested ones the run has)."""
    if not keys:
        return
    with sessions() as session:
        rows, ranks = _plan(session, run_pk, None if every_key else keys)
    total = len(rows.times)
    if samples and total > samples:
        rows = rows.take(sample_indices(total, samples))
        total = len(rows.times)
    page_rows = max(1, min(DEFAULT_PAGE_ROWS, MAX_PAGE_BYTES // (8 * (1 + len(keys)))))
    for first in range(0, total, page_rows):
        stop = min(total, first + page_rows)
        page = _Rows(rows.times[first:stop], rows.seqs[first:stop], rows.index[first:stop])
        yield _build_page(sessions, run_pk, keys, every_key, page, ranks)


def _plan(session: Session, run_pk: int, keys: Sequence[str] | None) -> tuple[_Rows, dict[int, int]]:
    """The selected rows in time order, and each selected batch's rank in seq order."""
    wanted: set[int] | None = None
    if keys is not None:
        wanted = set(
            session.execute(
                select(_Chunk.seq).where(_Chunk.run_pk == run_pk, _Chunk.key.in_(keys)).distinct()
            ).scalars()
        )
    result = session.execute(
        select(_Chunk.seq, _Chunk.min_time, _Chunk.max_time, _Chunk.n, _Chunk.values)
        .where(_Chunk.run_pk == run_pk, _Chunk.key == TIMESTAMP_KEY)
        .order_by(_Chunk.min_time, _Chunk.seq)
    )
    rows = _Rows(array("d"), array("q"), array("q"))
    selected: list[int] = []
    in_order = True
    latest = -math.inf
    for seq, min_time, max_time, n, blob in result:
        if wanted is not None and seq not in wanted:
            continue
        selected.append(seq)
        in_order = in_order and min_time >= latest
        latest = max(latest, max_time)
        rows.times.extend(unpack_float64(blob))
        rows.seqs.extend([seq] * n)
        rows.index.extend(range(n))
    if not in_order:  # overlapping batches: merge their rows by time (stable: ties keep batch order)
        rows = rows.take(sorted(range(len(rows.times)), key=rows.times.__getitem__))
    ranks = {seq: rank for rank, seq in enumerate(sorted(selected))}
    return rows, ranks


def _seq_ranges(seqs: Sequence[int], ranks: dict[int, int]) -> list[tuple[int, int]]:
    """Sorted distinct ``seqs`` as ranges of batches adjacent among the selected ones: a range then
    holds no selected batch outside the page."""
    ranges: list[tuple[int, int]] = []
    for seq in seqs:
        if ranges and ranks[seq] == ranks[ranges[-1][1]] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def _build_page(
    sessions: SessionFactory,
    run_pk: int,
    keys: Sequence[str],
    every_key: bool,
    page: _Rows,
    ranks: dict[int, int],
) -> SystemPage:
    ranges = _seq_ranges(sorted(set(page.seqs)), ranks)
    values: dict[tuple[str, int], array[float]] = {}
    key_filter: ColumnElement[bool] = _Chunk.key != TIMESTAMP_KEY if every_key else _Chunk.key.in_(keys)
    for first in range(0, len(ranges), _WINDOW_RANGES):
        window = ranges[first : first + _WINDOW_RANGES]
        with sessions() as session:
            result = session.execute(
                select(_Chunk.key, _Chunk.seq, _Chunk.values).where(
                    _Chunk.run_pk == run_pk,
                    key_filter,
                    or_(
                        *(
                            _Chunk.seq == a if a == b else and_(_Chunk.seq >= a, _Chunk.seq <= b)
                            for a, b in window
                        )
                    ),
                )
            )
            for key, seq, blob in result:
                values[(key, seq)] = unpack_float64(blob)
    # Segments of consecutive rows of one batch at consecutive indices: copied as slices.
    segments: list[tuple[int, int, int, int]] = []  # (first row on the page, seq, first index, length)
    for j, (seq, i) in enumerate(zip(page.seqs, page.index, strict=True)):
        if segments:
            start, s, i0, length = segments[-1]
            if s == seq and i0 + length == i:
                segments[-1] = (start, s, i0, length + 1)
                continue
        segments.append((j, seq, i, 1))
    n = len(page.times)
    series = []
    for key in keys:
        out = array("d", [math.nan]) * n
        for start, seq, i0, length in segments:
            chunk = values.get((key, seq))
            if chunk is not None:
                out[start : start + length] = chunk[i0 : i0 + length]
        series.append(SystemSeriesSlice(key, pack_float64(out)))
    return SystemPage(pack_float64(page.times), tuple(series))


def latest_system(session: Session, run_pk: int) -> SystemSnapshot | None:
    """The last row of the latest batch (by time), or None when the run has no system metrics."""
    latest = session.execute(
        select(_Chunk.seq, _Chunk.values)
        .where(_Chunk.run_pk == run_pk, _Chunk.key == TIMESTAMP_KEY)
        .order_by(_Chunk.min_time.desc(), _Chunk.seq.desc())
        .limit(1)
    ).one_or_none()
    if latest is None:
        return None
    seq, times_blob = latest
    result = session.execute(
        select(_Chunk.key, _Chunk.values).where(
            _Chunk.run_pk == run_pk, _Chunk.seq == seq, _Chunk.key != TIMESTAMP_KEY
        )
    )
    values = sorted((key, unpack_float64(blob)[-1]) for key, blob in result)
    return SystemSnapshot(unpack_float64(times_blob)[-1], tuple(values))
