"""Whole numeric columns of a run's history, for charts: one key's steps and values, straight from its
chunks, as numpy arrays.

A chart needs each key's (step, value) pairs, not rows: so this reads the key's chunks in step order
and joins their packed arrays as they are stored (int64 LE steps, float64 LE values), with no row
assembly and no page building. One query per key, through the index ``(run_pk, key, min_step)``;
chunks of one key never overlap and lie in ascending step order (an invariant of ingest), so the joined
arrays are sorted. Only the chunks that meet ``[min_step, max_step)`` are read, and the ends are cut to
it. The row times are the column ``_timestamp``, read the same way. Text (JSON) chunks are skipped.

A chunk whose steps are contiguous (``max_step - min_step + 1 == n``: a key logged at every step,
the usual case) does not send its steps blob at all: its steps are ``min_step, min_step + 1, ...``.
That halves what a long run's chart reads and copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import case, null, select
from sqlalchemy.orm import Session

from tracklog._history import JSON

from ._models import HistoryChunkRow

_NO_UPPER = 2**63 - 1

Steps = npt.NDArray[np.int64]
Values = npt.NDArray[np.float64]


def read_columns(
    session: Session, run_pk: int, keys: Sequence[str], min_step: int = 0, max_step: int | None = None
) -> dict[str, tuple[Steps, Values]]:
    """Per key of ``keys`` that has numeric values in the range: its steps and values."""
    hi = _NO_UPPER if max_step is None else max_step
    chunk = HistoryChunkRow
    contiguous = chunk.max_step - chunk.min_step + 1 == chunk.n
    out: dict[str, tuple[Steps, Values]] = {}
    for key in dict.fromkeys(keys):
        rows = session.execute(
            select(chunk.min_step, chunk.n, case((contiguous, null()), else_=chunk.steps), chunk.values)
            .where(
                chunk.run_pk == run_pk,
                chunk.key == key,
                chunk.col_type != JSON,
                chunk.max_step >= min_step,
                chunk.min_step < hi,
            )
            .order_by(chunk.min_step)
        ).all()
        values: list[bytes | memoryview] = []
        steps: list[Steps] = []
        runs: list[tuple[int, int]] = []  # (first step, count) of contiguous parts, merged when adjacent
        for lo_step, n, steps_blob, values_blob in rows:
            if steps_blob is None:
                i, j = max(0, min_step - lo_step), min(n, hi - lo_step)
            else:
                s = np.frombuffer(steps_blob, dtype="<i8")
                i, j = int(np.searchsorted(s, min_step)), int(np.searchsorted(s, hi))
            if j <= i:
                continue
            values.append(values_blob if (i, j) == (0, n) else memoryview(values_blob)[8 * i : 8 * j])
            if steps_blob is None:
                first = lo_step + i
                if runs and runs[-1][0] + runs[-1][1] == first:
                    runs[-1] = (runs[-1][0], runs[-1][1] + j - i)
                else:
                    _flush(runs, steps)
                    runs.append((first, j - i))
            else:
                _flush(runs, steps)
                steps.append(s[i:j])
        _flush(runs, steps)
        if values:
            joined = np.concatenate(steps) if len(steps) > 1 else steps[0]
            out[key] = (joined.astype(np.int64, copy=False), np.frombuffer(b"".join(values), dtype="<f8"))
    return out


def _flush(runs: list[tuple[int, int]], steps: list[Steps]) -> None:
    """Turns the pending contiguous run of steps (at most one) into its array."""
    if runs:
        first, count = runs.pop()
        steps.append(np.arange(first, first + count, dtype=np.int64))
