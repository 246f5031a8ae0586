"""Whole numeric columns of a run's history, for charts: one key's steps and values, straight from its
chunks.

A chart needs each key's (step, value) pairs, not rows: so this reads the key's chunks in step order
and joins their packed arrays as they are stored (int64 LE steps, float64 LE values), with no row
assembly and no page building. One query per key, through the index ``(run_pk, key, min_step)``;
chunks of one key never overlap and lie in ascending step order (an invariant of ingest), so the joined
arrays are sorted. Only the chunks that meet ``[min_step, max_step)`` are read, and the ends are cut to
it. The row times are the column ``_timestamp``, read the same way. Text (JSON) chunks are skipped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracklog._history import JSON, unpack_int64

from ._models import HistoryChunkRow

_NO_UPPER = 2**63 - 1


def read_columns(
    session: Session, run_pk: int, keys: Sequence[str], min_step: int = 0, max_step: int | None = None
) -> dict[str, tuple[bytes, bytes]]:
    """Per key of ``keys`` that has numeric values in the range: (steps, values) as packed bytes."""
    hi = _NO_UPPER if max_step is None else max_step
    chunk = HistoryChunkRow
    out: dict[str, tuple[bytes, bytes]] = {}
    for key in dict.fromkeys(keys):
        rows = session.execute(
            select(chunk.min_step, chunk.max_step, chunk.steps, chunk.values)
            .where(
                chunk.run_pk == run_pk,
                chunk.key == key,
                chunk.col_type != JSON,
                chunk.max_step >= min_step,
                chunk.min_step < hi,
            )
            .order_by(chunk.min_step)
        ).all()
        steps: list[bytes] = []
        values: list[bytes] = []
        for lo_step, hi_step, steps_blob, values_blob in rows:
            i, j = 0, len(steps_blob) // 8
            if lo_step < min_step or hi_step >= hi:  # a chunk across an end: cut it
                s = unpack_int64(steps_blob)
                i, j = bisect_left(s, min_step), bisect_left(s, hi)
            steps.append(steps_blob[8 * i : 8 * j])
            values.append(values_blob[8 * i : 8 * j])
        if steps:
            out[key] = (b"".join(steps), b"".join(values))
    return out
