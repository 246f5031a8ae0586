"""``sync_spool``: one spool pushed to a store in order, in bounded batches, resumable and idempotent."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tracklog._spool import SpoolWriter, read_synced, write_synced
from tracklog.v1 import records_pb2
from tracklogd import RetryPolicy, SpoolUnusable, StoreRejected, SyncProgress, sync_spool
from tracklogd.testing import FakeStoreServer, frames, history, make_ref

KEY = "me/proj/run1"
FAST_RETRY = RetryPolicy(initial=0.01, maximum=0.05, jitter=0.0, give_up_after=5.0)


def write_spool(path: Path, batch: list[tuple[int, bytes]]) -> Path:
    writer = SpoolWriter(path)
    writer.append(batch)
    writer.close()
    return path


def test_sync_pushes_every_frame_once_in_order_and_reports_progress(
    tmp_path: Path, store: FakeStoreServer
) -> None:
    spool = write_spool(tmp_path / "run-run1.tlog", frames(make_ref(), 20, finished=True))
    seen: list[SyncProgress] = []

    result = sync_spool(spool, store.target, progress=seen.append)

    assert store.store.seqs(KEY) == list(range(1, 23))
    assert result.ref == KEY
    assert (result.synced_seq, result.last_seq, result.frames_sent, result.finished) == (22, 22, 22, True)
    assert read_synced(spool) == 22
    assert seen[-1].synced_seq == 22
    assert seen[-1].frames_sent == 22
    assert store.store.records(KEY)[-1].WhichOneof("kind") == "finish"


def test_a_second_sync_sends_nothing(tmp_path: Path, store: FakeStoreServer) -> None:
    spool = write_spool(tmp_path / "run-run1.tlog", frames(make_ref(), 5, finished=True))
    sync_spool(spool, store.target)
    requests = len(store.store.requests)

    again = sync_spool(spool, store.target)

    assert again.frames_sent == 0
    assert again.finished
    assert len(store.store.requests) == requests
    assert store.store.seqs(KEY) == list(range(1, 8))


def test_a_growing_spool_is_synced_in_steps_without_resending(tmp_path: Path, store: FakeStoreServer) -> None:
    all_frames = frames(make_ref(), 10, finished=True)
    writer = SpoolWriter(tmp_path / "run-run1.tlog")
    writer.append(all_frames[:4])
    first = sync_spool(writer.path, store.target)
    writer.append(all_frames[4:])
    writer.close()

    second = sync_spool(writer.path, store.target)

    assert (first.synced_seq, first.finished) == (4, False)
    assert (second.frames_sent, second.synced_seq, second.finished) == (8, 12, True)
    sent = [frame.seq for request in store.store.requests for frame in request.frames]
    assert sent == list(range(1, 13))


def test_a_store_that_lost_the_run_gets_it_again_from_the_start(
    tmp_path: Path, store: FakeStoreServer
) -> None:
    spool = write_spool(tmp_path / "run-run1.tlog", frames(make_ref(), 5))
    sync_spool(spool, store.target)
    store.store.forget(KEY)
    writer = SpoolWriter(spool)
    writer.append([(7, history(5))])
    writer.close()

    result = sync_spool(spool, store.target)

    # The store answered accepted=false, applied_through=0 to frame 7; the sync went back to frame 1.
    assert store.store.seqs(KEY) == list(range(1, 8))
    assert result.synced_seq == 7


def test_requests_hold_at_most_256_frames(tmp_path: Path, store: FakeStoreServer) -> None:
    spool = write_spool(tmp_path / "run-run1.tlog", frames(make_ref(), 600))

    sync_spool(spool, store.target)

    sizes = [len(request.frames) for request in store.store.requests]
    assert sizes == [256, 256, 89]
    assert store.store.seqs(KEY) == list(range(1, 602))


def test_requests_hold_at_most_4_mib_of_frames(tmp_path: Path, store: FakeStoreServer) -> None:
    # Records are opaque to the sync: pad each to about 1 MiB with an unknown field (number 127).
    pad = b"\xfa\x07" + _varint(1 << 20) + b"x" * (1 << 20)
    padded = [(seq, history(seq) + pad) for seq in range(2, 12)]
    spool = write_spool(tmp_path / "run-run1.tlog", [frames(make_ref(), 0)[0], *padded])

    sync_spool(spool, store.target)

    request_bytes = [sum(len(frame.record) for frame in request.frames) for request in store.store.requests]
    assert all(size <= 4 * 1024 * 1024 for size in request_bytes)
    assert len(request_bytes) == 4
    assert store.store.seqs(KEY) == list(range(1, 12))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_transient_store_failures_are_retried(tmp_path: Path, store: FakeStoreServer) -> None:
    spool = write_spool(tmp_path / "run-run1.tlog", frames(make_ref(), 3))
    store.store.fail_next = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED]

    result = sync_spool(spool, store.target, retry=FAST_RETRY)

    assert result.synced_seq == 4
    assert store.store.seqs(KEY) == [1, 2, 3, 4]


def test_a_refused_run_raises_store_rejected_and_keeps_its_high_water_mark(
    tmp_path: Path, store: FakeStoreServer
) -> None:
    spool = write_spool(tmp_path / "run-run1.tlog", frames(make_ref(), 3))
    store.store.reject.add(KEY)

    with pytest.raises(StoreRejected, match="INVALID_ARGUMENT"):
        sync_spool(spool, store.target, retry=FAST_RETRY)

    # The batch, its first frame alone, and that frame as an empty record: the run itself is refused.
    assert len(store.store.requests) == 3
    assert read_synced(spool) == 0


def test_a_record_a_store_refuses_whole_batches_for_is_skipped_and_the_rest_synced(
    tmp_path: Path, store: FakeStoreServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A run id of its own: refusals are logged once per run, process-wide.
    batch = frames(make_ref("skipped-record"), 6, finished=True)
    spool = write_spool(tmp_path / "run-skipped-record.tlog", batch)
    store.store.refuse_records.add(batch[3][1])  # seq 4

    result = sync_spool(spool, store.target, retry=FAST_RETRY)
    again = sync_spool(spool, store.target, retry=FAST_RETRY)

    assert (result.synced_seq, result.finished, result.refused, again.frames_sent) == (8, True, 1, 0)
    assert store.store.seqs("me/proj/skipped-record") == list(range(1, 9))
    records = store.store.records("me/proj/skipped-record")
    assert records[3] == records_pb2.Record(history=b"")  # in its place, so that the seqs go on
    assert [r.SerializeToString() for r in records[4:7]] == [payload for _, payload in batch[4:7]]
    assert read_synced(spool) == 8
    (line,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "the store refused 1 record(s) of run me/proj/skipped-record" in line
    assert "record 4: ingest into" in line


def test_sync_resumes_after_the_persisted_high_water_mark(tmp_path: Path, store: FakeStoreServer) -> None:
    spool = write_spool(tmp_path / "run-run1.tlog", frames(make_ref(), 8))
    sync_spool(spool, store.target)
    writer = SpoolWriter(spool)
    writer.append([(10, history(8))])
    writer.close()
    store.store.requests.clear()

    sync_spool(spool, store.target)

    assert [frame.seq for frame in store.store.requests[0].frames] == [10]


def test_a_torn_tail_is_not_sent(tmp_path: Path, store: FakeStoreServer) -> None:
    spool = write_spool(tmp_path / "run-run1.tlog", frames(make_ref(), 4))
    with open(spool, "ab") as f:
        f.write(b"\x10\x00\x00\x00garbage")  # half a frame header, as a crash mid-write leaves

    result = sync_spool(spool, store.target)

    assert result.synced_seq == 5
    assert store.store.seqs(KEY) == [1, 2, 3, 4, 5]


def test_a_spool_that_does_not_begin_with_a_run_start_is_unusable(
    tmp_path: Path, store: FakeStoreServer
) -> None:
    spool = write_spool(tmp_path / "run-x.tlog", [(1, history(0))])

    with pytest.raises(SpoolUnusable, match="run start"):
        sync_spool(spool, store.target)


def test_a_missing_spool_is_unusable(tmp_path: Path, store: FakeStoreServer) -> None:
    with pytest.raises(SpoolUnusable):
        sync_spool(tmp_path / "run-nothing.tlog", store.target, ref=make_ref())


def test_a_high_water_mark_beyond_what_the_store_holds_is_corrected(
    tmp_path: Path, store: FakeStoreServer
) -> None:
    spool = write_spool(tmp_path / "run-run1.tlog", frames(make_ref(), 4))
    write_synced(spool, 3)  # e.g. synced to a store whose database was since replaced

    result = sync_spool(spool, store.target)

    assert result.synced_seq == 5
    assert store.store.seqs(KEY) == [1, 2, 3, 4, 5]
