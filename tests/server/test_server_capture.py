"""The automatic-capture RPCs on a real server (port 0) over a real database: SystemHistory, Logs,
ListFiles, GetFile, and the run's timing and metadata in GetRun."""

from __future__ import annotations

import hashlib
import json
import os
from array import array
from collections.abc import Iterator

import grpc
import pytest

from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc
from tracklog_server import RunKey, StoreServer
from tracklog_server.testing import FakeClock

from .helpers import (
    STDERR,
    STDOUT,
    RunWriter,
    file_chunk_record,
    file_records,
    metadata_record,
    output_record,
    ref,
    start_record,
    system_record,
    timing_record,
)

T0 = 1_700_000_000.0


@pytest.fixture
def server(db_url: str, clock: FakeClock) -> Iterator[StoreServer]:
    srv = StoreServer(db_url, port=0, http_port=None, clock=clock)
    srv.start()
    yield srv
    srv.stop(grace=1)


def ingest(
    stub: store_pb2_grpc.StoreStub, key: RunKey, frames: list[tuple[int, bytes]]
) -> store_pb2.IngestResponse:
    request = store_pb2.IngestRequest(
        ref=ref(key), frames=[records_pb2.Frame(seq=s, record=r) for s, r in frames]
    )
    response: store_pb2.IngestResponse = stub.Ingest(request, timeout=30)
    assert response.accepted
    return response


def floats(data: bytes) -> list[float]:
    return array("d", data).tolist()


def get_file(
    stub: store_pb2_grpc.StoreStub, key: RunKey, name: str, version: int = 0
) -> list[records_pb2.FileChunk]:
    return list(stub.GetFile(store_pb2.GetFileRequest(ref=ref(key), name=name, version=version), timeout=30))


def test_system_history_streams_rows_in_time_order_with_keys_and_samples(
    stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    w = RunWriter(key)
    records = [start_record(key)]
    for b in range(4):
        times = [T0 + 10 * (2 * b + i) for i in range(2)]
        records.append(
            system_record(
                times, {"system/cpu": [float(2 * b + i) for i in range(2)], "system/disk": [1.0, 2.0]}
            )
        )
    ingest(stub, key, w.frames(*records))
    (batch,) = stub.SystemHistory(store_pb2.SystemHistoryRequest(ref=ref(key)), timeout=10)
    assert floats(batch.timestamps) == [T0 + 10 * i for i in range(8)]
    assert {s.key: floats(s.values) for s in batch.series} == {
        "system/cpu": [float(i) for i in range(8)],
        "system/disk": [1.0, 2.0] * 4,
    }
    request = store_pb2.SystemHistoryRequest(ref=ref(key), keys=["system/cpu"], samples=3)
    (sampled,) = stub.SystemHistory(request, timeout=10)
    assert [s.key for s in sampled.series] == ["system/cpu"]
    assert floats(sampled.series[0].values) == [0.0, 4.0, 7.0]  # round(i * 7 / 2)


def test_logs_stream_lines_in_order_with_offset_and_limit(
    stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    w = RunWriter(key)
    lines = [(T0 + i, STDERR if i == 3 else STDOUT, f"line {i}") for i in range(10)]
    ingest(stub, key, w.frames(start_record(key), output_record(lines[:6]), output_record(lines[6:])))
    pages = list(stub.Logs(store_pb2.LogsRequest(ref=ref(key)), timeout=10))
    got = [(line.time, line.stream, line.text) for page in pages for line in page.lines]
    assert got == lines
    window = stub.Logs(store_pb2.LogsRequest(ref=ref(key), offset=2, limit=3), timeout=10)
    assert [line.text for page in window for line in page.lines] == ["line 2", "line 3", "line 4"]


def test_a_file_uploaded_in_several_batches_lists_and_downloads_byte_for_byte(
    stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    data = os.urandom(5 * 1024 * 1024 + 17)  # bigger than one streamed message
    chunks = file_records("ckpt/model.pt", 1, data)
    w = RunWriter(key)
    ingest(stub, key, w.frames(start_record(key), *chunks[:3]))
    ingest(stub, key, w.frames(*chunks[3:]))
    ingest(stub, key, w.frames(*file_records("ckpt/model.pt", 2, b"v2", chunk=1)[:1]))  # incomplete v2
    (info,) = stub.ListFiles(store_pb2.ListFilesRequest(ref=ref(key)), timeout=10).files
    assert (info.name, info.version, info.size, info.complete) == ("ckpt/model.pt", 1, len(data), True)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    got = get_file(stub, key, "ckpt/model.pt")
    assert b"".join(c.data for c in got) == data
    assert [c.offset for c in got] == [sum(len(x.data) for x in got[:i]) for i in range(len(got))]
    assert [c.last for c in got] == [False] * (len(got) - 1) + [True]
    assert got[-1].sha256 == info.sha256
    assert {(c.name, c.version, c.size) for c in got} == {("ckpt/model.pt", 1, len(data))}


def test_an_empty_file_downloads_as_one_empty_last_chunk(stub: store_pb2_grpc.StoreStub, key: RunKey) -> None:
    ingest(stub, key, RunWriter(key).frames(start_record(key), *file_records("empty", 1, b"")))
    (chunk,) = get_file(stub, key, "empty")
    assert (chunk.data, chunk.last, chunk.size, chunk.offset) == (b"", True, 0, 0)


def test_missing_files_and_versions_are_not_found_with_a_clear_message(
    stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    w = RunWriter(key)
    ingest(stub, key, w.frames(start_record(key), *file_records("half.bin", 1, b"abcdef", chunk=2)[:2]))
    cases = {
        ("half.bin", 0): "has no complete version yet",
        ("half.bin", 1): "version 1 of file 'half.bin' of run",
        ("half.bin", 4): "has no version 4 of file 'half.bin'",
        ("nothing.bin", 0): f"run {key} has no file 'nothing.bin'",
    }
    for (name, version), message in cases.items():
        with pytest.raises(grpc.RpcError) as info:
            get_file(stub, key, name, version)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert message in str(info.value.details())
    missing = records_pb2.RunRef(entity="e", project="p", id="nope")
    for call in (
        lambda: list(stub.SystemHistory(store_pb2.SystemHistoryRequest(ref=missing), timeout=10)),
        lambda: list(stub.Logs(store_pb2.LogsRequest(ref=missing), timeout=10)),
        lambda: stub.ListFiles(store_pb2.ListFilesRequest(ref=missing), timeout=10),
        lambda: list(stub.GetFile(store_pb2.GetFileRequest(ref=missing, name="x"), timeout=10)),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert info.value.details() == "run e/p/nope not found"


def test_out_of_order_and_oversized_chunks_are_refused_with_a_reason(
    stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    w = RunWriter(key)
    ingest(stub, key, w.frames(start_record(key)))
    bad = [
        (
            file_chunk_record(name="x.bin", version=1, offset=4, data=b"late"),
            "no upload of it is in progress",
        ),
        (file_chunk_record(name="x.bin", version=1, size=2**40), "the limit is 268435456"),
        (file_chunk_record(name="../x", version=1), "'..' part"),
    ]
    for seq, (record, reason) in enumerate(bad, start=2):
        (refused,) = ingest(stub, key, [(seq, record)]).refused
        assert refused.seq == seq
        assert reason in refused.reason
    with pytest.raises(grpc.RpcError) as info:
        get_file(stub, key, "")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_run_has_the_timing_and_the_captured_metadata(
    stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    w = RunWriter(key)
    metadata = {"os": "Linux-6.1", "git": {"commit": "0123abc", "dirty": True}}
    ingest(
        stub, key, w.frames(start_record(key, pid=9), metadata_record(metadata), timing_record(12.5, 10.0))
    )
    view = stub.GetRun(store_pb2.GetRunRequest(ref=ref(key)), timeout=10)
    assert (view.runtime, view.tracked_seconds) == (12.5, 10.0)
    assert json.loads(view.metadata_json) == {"pid": 9, "offline": False, **metadata}
