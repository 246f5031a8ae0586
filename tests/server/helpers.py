"""Building ingest frames the way the SDK and the daemon do: Records with consecutive seqs."""

from __future__ import annotations

import hashlib
import json
import math
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from tracklog._history import BatchBuilder, decode_rows
from tracklog.v1 import records_pb2
from tracklog_server import HistoryPage, HistoryQuery, IngestResult, RunKey, SqlAlchemyStore, SystemQuery


def refusal(result: IngestResult, seq: int) -> str:
    """The store's reason for refusing frame ``seq``, after checking that it refused that frame alone
    and applied the request through it."""
    assert result.accepted
    assert result.applied_through >= seq
    assert [r.seq for r in result.refused] == [seq], result.refused
    return result.refused[0].reason


def ref(key: RunKey) -> records_pb2.RunRef:
    return records_pb2.RunRef(entity=key.entity, project=key.project, id=key.id)


def start_record(key: RunKey, **fields: Any) -> bytes:
    config = fields.pop("config", None)
    if config is not None:
        fields["config_json"] = json.dumps(config)
    return records_pb2.Record(start=records_pb2.RunStart(ref=ref(key), **fields)).SerializeToString()


def history_record(rows: Iterable[tuple[int, Mapping[str, Any]]], time0: float = 1_700_000_000.0) -> bytes:
    """A history record of ``(step, {key: value})`` rows, encoded by the SDK's own BatchBuilder."""
    builder = BatchBuilder()
    for step, row in rows:
        builder.add(step, time0 + step, row)
    return records_pb2.Record(history=builder.encode()).SerializeToString()


def config_record(items: Mapping[str, Any]) -> bytes:
    return records_pb2.Record(
        config=records_pb2.ConfigUpdate(items_json=json.dumps(items))
    ).SerializeToString()


def summary_record(items: Mapping[str, Any], removed: Sequence[str] = ()) -> bytes:
    update = records_pb2.SummaryUpdate(items_json=json.dumps(items), removed=list(removed))
    return records_pb2.Record(summary=update).SerializeToString()


def finish_record(
    state: records_pb2.RunState.ValueType = records_pb2.RUN_STATE_FINISHED,
    exit_code: int = 0,
    end_time: float = 0.0,
) -> bytes:
    finish = records_pb2.Finish(state=state, exit_code=exit_code, end_time=end_time)
    return records_pb2.Record(finish=finish).SerializeToString()


def update_record(**fields: Any) -> bytes:
    tags = fields.pop("tags", None)
    update = records_pb2.RunUpdate(**fields)
    if tags is not None:
        update.tags.values.extend(tags)
    return records_pb2.Record(update=update).SerializeToString()


def system_record(times: Sequence[float], series: Mapping[str, Sequence[float]]) -> bytes:
    """A SystemBatch: one row per time, one float64 per row for each key (NaN: not measured)."""
    batch = records_pb2.SystemBatch(timestamps=array("d", times).tobytes())
    for key, values in series.items():
        batch.series.add(key=key, values=array("d", values).tobytes())
    return records_pb2.Record(system=batch).SerializeToString()


def metadata_record(items: Mapping[str, Any]) -> bytes:
    return records_pb2.Record(metadata=records_pb2.Metadata(json=json.dumps(items))).SerializeToString()


STDOUT = records_pb2.OUTPUT_STREAM_STDOUT
STDERR = records_pb2.OUTPUT_STREAM_STDERR


def output_record(lines: Iterable[tuple[float, int, str]]) -> bytes:
    """Console lines as ``(time, stream, text)``."""
    output = records_pb2.OutputLines()
    for t, stream, text in lines:
        output.lines.add(time=t, stream=stream, text=text)
    return records_pb2.Record(output=output).SerializeToString()


def file_records(name: str, version: int, data: bytes, chunk: int = 1024 * 1024) -> list[bytes]:
    """One version of a file as FileChunk records of at most ``chunk`` bytes, as the SDK sends them:
    size in every chunk, last and sha256 on the final one (an empty file is one empty chunk)."""
    digest = hashlib.sha256(data).hexdigest()
    starts = list(range(0, len(data), chunk)) or [0]
    out = []
    for i, start in enumerate(starts):
        last = i == len(starts) - 1
        piece = records_pb2.FileChunk(
            name=name,
            version=version,
            offset=start,
            data=data[start : start + chunk],
            last=last,
            size=len(data),
            sha256=digest if last else "",
        )
        out.append(records_pb2.Record(file=piece).SerializeToString())
    return out


def file_chunk_record(**fields: Any) -> bytes:
    return records_pb2.Record(file=records_pb2.FileChunk(**fields)).SerializeToString()


def timing_record(runtime: float, tracked_seconds: float) -> bytes:
    timing = records_pb2.Timing(runtime=runtime, tracked_seconds=tracked_seconds)
    return records_pb2.Record(timing=timing).SerializeToString()


def read_system(store: SqlAlchemyStore, key: RunKey, **query: Any) -> list[dict[str, float]]:
    """System metric rows as dicts: ``_timestamp`` and each key's value."""
    out: list[dict[str, float]] = []
    for page in store.system_history(key, SystemQuery(**query)):
        times = array("d")
        times.frombytes(page.timestamps)
        columns = {}
        for s in page.series:
            values = array("d")
            values.frombytes(s.values)
            columns[s.key] = values
        for i, t in enumerate(times):
            out.append({"_timestamp": t, **{k: v[i] for k, v in columns.items()}})
    return out


def read_file(store: SqlAlchemyStore, key: RunKey, name: str, version: int = 0) -> bytes:
    _info, pieces = store.read_file(key, name, version)
    return b"".join(pieces)


class RunWriter:
    """Numbers records 1, 2, 3 ... for one run, as the run's spool does."""

    def __init__(self, key: RunKey) -> None:
        self.key = key
        self.seq = 0

    def frames(self, *records: bytes) -> list[tuple[int, bytes]]:
        out = []
        for record in records:
            self.seq += 1
            out.append((self.seq, record))
        return out


def pages_to_batches(pages: Iterable[HistoryPage]) -> list[records_pb2.HistoryBatch]:
    out = []
    for page in pages:
        batch = records_pb2.HistoryBatch(steps=page.steps, timestamps=page.timestamps)
        for c in page.columns:
            batch.columns.add(
                key=c.key, type=c.type, steps=c.steps, values=c.values, json_values=c.json_values
            )
        out.append(batch)
    return out


def read_rows(store: SqlAlchemyStore, key: RunKey, **query: Any) -> list[dict[str, Any]]:
    return list(decode_rows(pages_to_batches(store.history(key, HistoryQuery(**query)))))


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (for round-trip checks)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Polls ``predicate`` until it returns something truthy; fails at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


class StatementCounter:
    """Records every SQL statement a store issues (transaction control left out): for tests that
    bound how many statements an operation costs."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            self.statements.append(statement)
