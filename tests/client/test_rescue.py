"""Rescue files (frames finish() could not hand to a stalled daemon): whoever next owns the spool adds
them in seq order, drops what it holds already, removes the file, and keeps a file it cannot use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklog import _cli_repair
from tracklog._rescue import merge_rescues, read_rescue, rescue_files, rescue_path, write_rescue
from tracklog._spool import SpoolWriter, frames
from tracklog.v1 import records_pb2


def _payload(seq: int) -> bytes:
    return records_pb2.Record(
        summary=records_pb2.SummaryUpdate(items_json=f'{{"s": {seq}}}')
    ).SerializeToString()


def _spool_with(path: Path, last: int) -> SpoolWriter:
    writer = SpoolWriter(path)
    writer.append([(seq, _payload(seq)) for seq in range(1, last + 1)])
    return writer


@settings(max_examples=25, deadline=None)
@given(held=st.integers(1, 20), first=st.integers(1, 21), count=st.integers(1, 10))
def test_rescued_frames_join_the_spool_once_in_seq_order_whatever_it_holds_already(
    tmp_path_factory: pytest.TempPathFactory, held: int, first: int, count: int
) -> None:
    first = min(first, held + 1)  # a rescue starts at or below the first frame the spool lacks
    spool = tmp_path_factory.mktemp("rescue") / "run-r.tlog"
    writer = _spool_with(spool, held)
    written = write_rescue(spool, [(seq, _payload(seq)) for seq in range(first, first + count)])
    problems: list[str] = []

    merged = merge_rescues(writer, problems.append)
    writer.close()

    end = max(held, first + count - 1)
    assert problems == []
    assert merged.frames == end - held
    assert [(f.seq, f.payload) for f in frames(spool)] == [(s, _payload(s)) for s in range(1, end + 1)]
    assert not written.exists()


def test_a_rescue_file_that_leaves_a_gap_is_kept_and_reported(tmp_path: Path) -> None:
    spool = tmp_path / "run-r.tlog"
    writer = _spool_with(spool, 3)
    written = write_rescue(spool, [(6, _payload(6))])
    problems: list[str] = []

    merged = merge_rescues(writer, problems.append)

    assert merged.frames == 0
    assert writer.last_seq == 3
    assert written.exists()
    assert problems == [
        f"the rescued frames in {written} start at frame 6 but run-r.tlog ends at frame 3; they cannot "
        "join it and the file is kept"
    ]
    writer.close()


def test_a_rescue_file_is_private_whole_and_named_by_its_process(tmp_path: Path) -> None:
    spool = tmp_path / "run-r.tlog"
    written = write_rescue(spool, [(4, _payload(4)), (5, _payload(5))])
    assert written == rescue_path(spool) == tmp_path / f"run-r.tlog.rescue-{os.getpid()}"
    assert written.stat().st_mode & 0o777 == 0o600
    (tmp_path / "run-r.tlog.rescue-7.tmp").write_bytes(b"half")  # one being written: not a rescue
    assert rescue_files(spool) == [written]
    found, damage = read_rescue(written)
    assert [f.seq for f in found] == [4, 5]
    assert damage == []


def test_tracklog_sync_adds_rescued_frames_to_a_spool_no_daemon_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = tmp_path / "run-r.tlog"
    _spool_with(spool, 2).close()
    written = write_rescue(spool, [(3, _payload(3)), (4, _payload(4))])

    assert _cli_repair.take_rescued(spool, "run-x") == 0

    assert "run-x: added 2 frames rescued by the training process to run-r.tlog" in capsys.readouterr().out
    assert [f.seq for f in frames(spool)] == [1, 2, 3, 4]
    assert not written.exists()


def test_tracklog_sync_leaves_rescued_frames_to_the_writer_that_holds_the_spool(tmp_path: Path) -> None:
    spool = tmp_path / "run-r.tlog"
    holder = _spool_with(spool, 2)  # a daemon's writer
    written = write_rescue(spool, [(3, _payload(3))])

    assert _cli_repair.take_rescued(spool, "run-x") == 0
    assert written.exists()
    assert holder.last_seq == 2
    holder.close()
