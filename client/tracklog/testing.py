"""Helpers for tests of code that uses tracklog: read what a run wrote to its spool."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tracklog import _history, _spool
from tracklog.v1 import records_pb2

__all__ = ["history_rows", "read_records", "spool_of"]


def spool_of(run_dir: str | os.PathLike[str]) -> Path:
    """The spool file of a run directory."""
    spools = sorted(Path(run_dir).glob("run-*.tlog"))
    if len(spools) != 1:
        raise FileNotFoundError(f"expected one run-*.tlog in {run_dir}, found {len(spools)}")
    return spools[0]


def read_records(run_dir: str | os.PathLike[str]) -> list[tuple[int, records_pb2.Record]]:
    """Every (seq, Record) in a run directory's spool, in order."""
    return [
        (frame.seq, records_pb2.Record.FromString(frame.payload)) for frame in _spool.scan(spool_of(run_dir))
    ]


def history_rows(records: Iterable[tuple[int, records_pb2.Record]]) -> list[dict[str, Any]]:
    """The history rows carried by ``records``, decoded as ``Api().run(...).history()`` returns them
    (without ``_runtime``)."""
    batches = [
        records_pb2.HistoryBatch.FromString(record.history)
        for _, record in records
        if record.WhichOneof("kind") == "history"
    ]
    return list(_history.decode_rows(batches))
