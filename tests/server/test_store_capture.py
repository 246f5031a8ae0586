"""Ingest of automatic capture (system metrics, metadata, console output, files, timing) on SQLite and
PostgreSQL: mixed with history, idempotent, all or nothing, within a fixed statement budget."""

from __future__ import annotations

import json
import math
import re
from array import array

import pytest

from tracklog.v1 import records_pb2
from tracklog_server import OutputStream, RunKey, RunState, SqlAlchemyStore
from tracklog_server.testing import FakeClock

from .helpers import (
    STDERR,
    STDOUT,
    RunWriter,
    StatementCounter,
    file_chunk_record,
    file_records,
    finish_record,
    history_record,
    metadata_record,
    output_record,
    read_file,
    read_rows,
    read_system,
    refusal,
    start_record,
    system_record,
    timing_record,
)

T0 = 1_700_000_000.0


def capture_batch(i: int) -> list[bytes]:
    """Records as a training process interleaves them: history, system metrics, output, a file."""
    return [
        history_record([(i, {"loss": 1.0 / (i + 1)})]),
        system_record([T0 + 10 * i], {"system/cpu": [10.0 + i], "system/gpu.0.gpu": [math.nan]}),
        output_record([(T0 + i, STDOUT, f"epoch {i}"), (T0 + i, STDERR, f"warning {i}")]),
        *file_records(f"ckpt/{i}.txt", 1, f"checkpoint {i}".encode() * 3, chunk=7),
    ]


def test_capture_records_mixed_with_history_are_stored_once_when_resent(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    frames = w.frames(start_record(key), *capture_batch(0), *capture_batch(1))
    assert store.ingest(key, frames).accepted
    again = store.ingest(key, frames)
    overlapping = store.ingest(key, frames[3:] + w.frames(*capture_batch(2)))
    assert (again.applied_through, overlapping.accepted, overlapping.applied_through) == (
        len(frames),
        True,
        w.seq,
    )
    run = store.get_run(key)
    assert (run.history_rows, run.output_lines) == (3, 6)
    assert [r["loss"] for r in read_rows(store, key)] == [1.0, 0.5, 1 / 3]
    assert [r["system/cpu"] for r in read_system(store, key)] == [10.0, 11.0, 12.0]
    lines = [line.text for page in store.logs(key) for line in page]
    assert lines == ["epoch 0", "warning 0", "epoch 1", "warning 1", "epoch 2", "warning 2"]
    assert [(f.name, f.version, f.complete) for f in store.list_files(key)] == [
        ("ckpt/0.txt", 1, True),
        ("ckpt/1.txt", 1, True),
        ("ckpt/2.txt", 1, True),
    ]
    assert read_file(store, key, "ckpt/1.txt") == b"checkpoint 1" * 3


def test_a_batch_whose_last_frame_is_invalid_keeps_all_its_other_capture_records(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key)))
    bad = file_chunk_record(name="late.bin", version=1, offset=5, data=b"x", size=6)  # no upload at 0
    frames = w.frames(
        *capture_batch(0), metadata_record({"os": "Linux"}), timing_record(5.0, 4.0), bad
    )  # fmt: skip
    result = store.ingest(key, frames)
    assert re.search(r"late\.bin.*offset 5", refusal(result, frames[-1][0]))
    run = store.get_run(key)
    assert (run.last_seq, run.output_lines) == (frames[-1][0], 2)
    assert json.loads(run.metadata_json)["os"] == "Linux"
    assert run.runtime == 5.0
    assert len(read_system(store, key)) == 1
    assert [f.name for f in store.list_files(key)] == ["ckpt/0.txt"]
    # Sent again (the ack was lost), nothing is applied twice.
    assert store.ingest(key, frames) == type(result)(True, frames[-1][0])
    assert store.get_run(key).output_lines == 2


def test_metadata_merges_top_level_keys_and_keeps_the_run_start_fields(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key, pid=7), metadata_record({"os": "Linux", "git": {"a": 1}})))
    store.ingest(key, w.frames(metadata_record({"git": {"commit": "abc"}, "python": "3.12"})))
    metadata = json.loads(store.get_run(key).metadata_json)
    assert metadata == {"pid": 7, "offline": False, "os": "Linux", "git": {"commit": "abc"}, "python": "3.12"}


def test_the_latest_timing_wins_and_runtime_falls_back_to_wall_time_without_one(
    store: SqlAlchemyStore, key: RunKey, clock: FakeClock
) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key, start_time=clock() - 30)))
    run = store.get_run(key)
    assert (run.runtime, run.tracked_seconds) == (30.0, 30.0)  # no Timing yet: start to latest news
    store.ingest(key, w.frames(timing_record(40.0, 31.5), timing_record(60.0, 45.25)))
    run = store.get_run(key)
    assert (run.runtime, run.tracked_seconds) == (60.0, 45.25)
    store.ingest(key, w.frames(finish_record(end_time=clock() + 100)))
    assert store.get_run(key).runtime == 60.0  # a Timing was sent: it is what counts


def test_a_finished_run_without_timing_has_the_wall_time_from_start_to_end(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key, start_time=1000.0), finish_record(end_time=1090.5)))
    run = store.get_run(key)
    assert (run.state, run.runtime, run.tracked_seconds) == (RunState.FINISHED, 90.5, 90.5)


def test_console_lines_keep_their_time_stream_and_exact_text(store: SqlAlchemyStore, key: RunKey) -> None:
    w = RunWriter(key)
    texts = ["", "  indented\ttab", "ünïcødé ✓", "<b>not html</b>", "x" * 10_000]
    store.ingest(
        key, w.frames(start_record(key), output_record([(T0 + i, STDERR, t) for i, t in enumerate(texts)]))
    )
    (page,) = store.logs(key)
    assert [(line.time, line.stream, line.text) for line in page] == [
        (T0 + i, OutputStream.STDERR, t) for i, t in enumerate(texts)
    ]


def test_system_batches_without_rows_and_empty_output_change_nothing_but_count(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    result = store.ingest(key, w.frames(start_record(key), system_record([], {}), output_record([])))
    assert (result.accepted, result.applied_through) == (True, 3)
    assert read_system(store, key) == []
    assert store.get_run(key).output_lines == 0


def _system(times_bytes: bytes, **series: bytes) -> bytes:
    batch = records_pb2.SystemBatch(timestamps=times_bytes)
    for k, values in series.items():
        batch.series.add(key=k.replace("__", "/"), values=values)
    return records_pb2.Record(system=batch).SerializeToString()


def _f64(*values: float) -> bytes:
    return array("d", values).tobytes()


INVALID = {
    "system timestamps are 4 bytes": _system(b"\x00" * 4),
    "series but no rows": _system(b"", system__cpu=b""),
    "finite, non-negative": _system(_f64(math.nan), system__cpu=_f64(1.0)),
    "ascending order": _system(_f64(2.0, 1.0), system__cpu=_f64(1.0, 2.0)),
    "one float64 value per row": _system(_f64(1.0, 2.0), system__cpu=_f64(1.0)),
    "reserved": _system(_f64(1.0), _timestamp=_f64(1.0)),
    "system metric key is empty": _system(_f64(1.0), **{"": _f64(1.0)}),
    "bytes in UTF-8": _system(_f64(1.0), **{"é" * 600: _f64(1.0)}),
    "metadata must be a JSON object": records_pb2.Record(
        metadata=records_pb2.Metadata(json="[1]")
    ).SerializeToString(),
    "stream must be stdout or stderr": output_record([(1.0, 0, "no stream")]),
    "output line time": output_record([(-1.0, STDOUT, "before 1970")]),
    "the limit is 262144": output_record([(1.0, STDOUT, "x" * (256 * 1024 + 1))]),
    "has an empty, '.' or '..' part": file_chunk_record(name="a/../b", version=1, last=True, sha256="0" * 64),
    "relative '/'-separated path": file_chunk_record(name="/etc/passwd", version=1),
    "without backslashes": file_chunk_record(name="a\\b", version=1),
    "version must be 1 or more": file_chunk_record(name="a", version=0),
    "sha256 \\(64 hex digits\\)": file_chunk_record(name="a", version=1, last=True, sha256="xyz"),
    "the limit is 268435456": file_chunk_record(name="big", version=1, size=256 * 1024 * 1024 + 1),
    "offset.*the limit is 268435456|is 268435457 bytes": file_chunk_record(
        name="far", version=1, offset=256 * 1024 * 1024, data=b"x"
    ),
    "runtime must be": timing_record(math.inf, 1.0),
    "tracked_seconds must be": timing_record(1.0, -2.0),
}


@pytest.mark.parametrize(("reason", "record"), list(INVALID.items()), ids=list(INVALID))
def test_invalid_capture_records_are_refused_with_a_reason(
    store: SqlAlchemyStore, key: RunKey, reason: str, record: bytes
) -> None:
    store.ingest(key, [(1, start_record(key))])
    result = store.ingest(key, [(2, history_record([(0, {"x": 1.0})])), (3, record)])
    assert re.search(reason, refusal(result, 3))
    run = store.get_run(key)
    assert (run.last_seq, run.history_rows, len(run.problems)) == (3, 1, 1)


def test_a_run_with_too_many_system_keys_is_refused(store: SqlAlchemyStore, key: RunKey) -> None:
    w = RunWriter(key)
    store.ingest(
        key, w.frames(start_record(key), system_record([1.0], {f"system/k{i}": [1.0] for i in range(1000)}))
    )
    more = system_record([2.0], {f"system/more{i}": [1.0] for i in range(25)})
    result = store.ingest(key, w.frames(more))
    assert "1025 system metric keys; the limit is 1024" in refusal(result, w.seq)
    assert len(read_system(store, key)[0]) == 1001


def test_an_ingest_issues_the_same_few_statements_whatever_its_size(
    store: SqlAlchemyStore, key: RunKey, counter: StatementCounter, backend: str
) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key), *file_records("live.txt", 1, b"a" * 10, chunk=4)[:1]))

    def batch(n: int) -> list[tuple[int, bytes]]:
        records: list[bytes] = []
        for i in range(n):
            step = w.seq + len(records)
            records += capture_batch(step)
            records += [metadata_record({f"m{i}": i}), timing_record(float(i), float(i))]
        return w.frames(*records)

    counter.statements.clear()
    store.ingest(key, batch(2))
    small = len(counter.statements)
    counter.statements.clear()
    # Also continues and completes the upload started in the first ingest (an UPDATE of its version).
    store.ingest(key, batch(50) + w.frames(*file_records("live.txt", 1, b"a" * 10, chunk=4)[1:]))
    large = len(counter.statements)
    assert small <= large <= 12, counter.statements
    if backend == "sqlite":  # PostgreSQL's driver may split a large executemany into several batches
        assert large - small <= 1  # only the UPDATE of the continued upload
    assert read_file(store, key, "live.txt") == b"a" * 10
