"""Losses reported to the store (frames lost to a damaged spool, records the SDK dropped): noted on the
run with their rows, and the run's seq goes on after them. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tracklog.v1 import records_pb2
from tracklog_server import RunKey, SqlAlchemyStore

from .helpers import finish_record, history_record, read_rows, start_record


def lost_record(first: int, last: int, rows: int, *, known: bool = True) -> bytes:
    lost = records_pb2.FramesLost(
        file="run-x.tlog", first_seq=first, last_seq=last, rows=rows, rows_known=known, bytes=4096,
        reason=f"frame {first} fails its payload crc at offset 1234",
    )  # fmt: skip
    return records_pb2.Record(lost=lost).SerializeToString()


def rows(start: int, stop: int) -> list[tuple[int, dict[str, float]]]:
    return [(s, {"loss": float(s)}) for s in range(start, stop)]


def test_lost_frames_are_noted_with_their_rows_and_the_frames_after_them_are_no_gap(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    first = store.ingest(key, [(1, start_record(key)), (2, history_record(rows(0, 10)))])
    assert (first.accepted, first.applied_through) == (True, 2)

    lost = store.ingest(key, [(3, lost_record(3, 5, 30))])
    after = store.ingest(key, [(6, history_record(rows(40, 50))), (7, finish_record())])

    assert (lost.accepted, lost.applied_through) == (True, 5)
    assert (after.accepted, after.applied_through) == (True, 7)
    run = store.get_run(key)
    assert (run.history_rows, run.rows_lost, run.last_seq, run.state.value) == (20, 30, 7, "finished")
    assert run.problems == (
        "frames 3-5 of run-x.tlog lost to damage on disk (30 history rows, 4,096 bytes): "
        "frame 3 fails its payload crc at offset 1234",
    )
    assert [r["_step"] for r in read_rows(store, key)] == [*range(10), *range(40, 50)]


def test_a_lost_frame_inside_a_batch_is_followed_by_the_seq_after_its_range(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    frames = [(1, start_record(key)), (2, lost_record(2, 2, 0, known=False)), (3, history_record(rows(0, 3)))]

    result = store.ingest(key, frames)
    again = store.ingest(key, frames)  # a resend changes nothing

    assert (result.applied_through, again.applied_through) == (3, 3)
    run = store.get_run(key)
    assert (run.history_rows, run.rows_lost) == (3, 0)
    assert run.problems == (
        "frame 2 of run-x.tlog lost to damage on disk (an unknown number of history rows, 4,096 bytes): "
        "frame 2 fails its payload crc at offset 1234",
    )


def test_records_the_training_process_dropped_are_noted_as_lost_rows(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    dropped = records_pb2.RecordsDropped(rows=1500, records=3, reason="its memory cap of 64 MiB was reached")
    store.ingest(key, [(1, start_record(key)), (2, records_pb2.Record(dropped=dropped).SerializeToString())])

    run = store.get_run(key)
    assert run.rows_lost == 1500
    assert run.problems == (
        "the training process dropped 1,500 history rows and 3 other records: "
        "its memory cap of 64 MiB was reached",
    )


def test_a_run_whose_start_record_was_lost_is_created_from_its_key_with_the_loss_noted(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    result = store.ingest(key, [(1, lost_record(1, 1, 0, known=False)), (2, history_record(rows(0, 3)))])

    assert (result.accepted, result.applied_through) == (True, 2)
    run = store.get_run(key)
    assert (run.name, run.history_rows, run.state) == (key.id, 3, "running")
    assert len(run.problems) == 1
    assert run.problems[0].startswith("frame 1 of")


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (2, 1, "lost frames 2-1 are not a range of seqs"),
        (3, 4, "FramesLost from seq 3 must be sent at that seq"),
    ],
)
def test_lost_frames_that_are_not_a_range_from_their_own_seq_are_refused_as_one_record(
    store: SqlAlchemyStore, key: RunKey, first: int, last: int, message: str
) -> None:
    result = store.ingest(key, [(1, start_record(key)), (2, lost_record(first, last, 0))])

    assert (result.accepted, result.applied_through) == (True, 2)  # its seq only, not a range
    assert [(r.seq, r.reason) for r in result.refused] == [(2, message)]
    assert store.get_run(key).problems == (f"record 2 refused: {message}",)
