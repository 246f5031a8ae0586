"""The spool file: frames a reader can resynchronise on, damage reported, one writer, whole appends."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tmpfs import fill, small_tmpfs
from tracklog._history import BatchBuilder
from tracklog._spool import (
    HEADER,
    MAGIC,
    MAGIC_V1,
    Damage,
    FrameAt,
    SpoolError,
    SpoolWriter,
    history_rows,
    recover,
    scan,
)
from tracklog.testing import FailingFileOps
from tracklog.v1 import records_pb2


def history_record(first_step: int, rows: int) -> bytes:
    builder = BatchBuilder()
    for step in range(first_step, first_step + rows):
        builder.add(step, 1_700_000_000.0 + step, {"loss": 1.0 / (step + 1), "acc": step * 0.001})
    return records_pb2.Record(history=builder.encode()).SerializeToString()


def write(path: Path, count: int, rows: int = 10) -> list[int]:
    """Writes ``count`` history frames of ``rows`` rows; returns the offset where each frame starts."""
    writer = SpoolWriter(path)
    starts = []
    for seq in range(1, count + 1):
        starts.append(os.path.getsize(path))
        writer.append([(seq, history_record((seq - 1) * rows, rows))])
    writer.close()
    return starts


def read(path: Path) -> tuple[list[FrameAt], list[Damage], int]:
    frames: list[FrameAt] = []
    damage: list[Damage] = []
    with scan(path) as found:
        for item in found:
            if isinstance(item, FrameAt):
                frames.append(item)
            else:
                damage.append(item)
    return frames, damage, found.tail_bytes


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def test_frames_are_read_back_with_their_seqs_payloads_and_the_rows_their_headers_carry(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "run-a.tlog"
    writer = SpoolWriter(spool)
    payloads = [history_record(0, 7), b"\x32\x00", history_record(7, 3)]
    assert writer.append([(1, payloads[0]), (2, payloads[1]), (3, payloads[2], 99)]) == 3
    writer.close()

    frames, damage, tail = read(spool)

    assert spool.read_bytes()[:8] == MAGIC
    assert [(f.seq, f.payload, f.rows) for f in frames] == [
        (1, payloads[0], 7),
        (2, payloads[1], 0),
        (3, payloads[2], 99),
    ]
    assert (damage, tail) == ([], 0)


def test_history_rows_reads_the_row_count_of_a_history_record_and_zero_for_anything_else() -> None:
    assert history_rows(history_record(0, 1000)) == 1000
    assert history_rows(records_pb2.Record(finish=records_pb2.Finish(exit_code=1)).SerializeToString()) == 0
    assert history_rows(b"") == 0
    assert history_rows(b"\x12\xff") == 0  # cut short


def test_one_flipped_byte_in_frame_25_of_50_costs_its_1000_rows_and_is_reported(tmp_path: Path) -> None:
    spool = tmp_path / "run-a.tlog"
    starts = write(spool, 50, rows=1000)
    flip(spool, starts[24] + HEADER.size + 5000)  # inside frame 25's payload

    frames, damage, tail = read(spool)

    assert [f.seq for f in frames] == [s for s in range(1, 51) if s != 25]
    assert sum(f.rows for f in frames) == 49_000
    assert len(damage) == 1
    lost = damage[0]
    assert (lost.first_seq, lost.last_seq, lost.rows, lost.rows_known) == (25, 25, 1000, True)
    assert (lost.start, lost.end) == (starts[24], starts[25])
    assert "frame 25 lost (1000 history rows)" in lost.describe()
    assert tail == 0


# Offsets within frame 3 (of 5) where one flipped byte lands, by what it hits.
HEADER_PARTS = {"marker": 0, "length": 5, "rows": 8, "seq": 12, "payload crc": 20, "header crc": 25}


@pytest.mark.parametrize("part", [*HEADER_PARTS, "payload start", "payload end"])
def test_a_flipped_byte_anywhere_in_a_frame_loses_that_frame_only_and_reports_it(
    tmp_path: Path, part: str
) -> None:
    spool = tmp_path / "run-a.tlog"
    starts = write(spool, 5)
    where = {"payload start": HEADER.size, "payload end": starts[3] - starts[2] - 1}.get(part)
    flip(spool, starts[2] + (HEADER_PARTS[part] if where is None else where))

    frames, damage, tail = read(spool)

    assert [f.seq for f in frames] == [1, 2, 4, 5]
    assert [(d.first_seq, d.last_seq, d.start, d.end) for d in damage] == [(3, 3, starts[2], starts[3])]
    # A header that still checks tells the rows; behind a damaged one the payload tells them, unverified.
    assert (damage[0].rows, damage[0].rows_known) == (10, part not in HEADER_PARTS)
    assert tail == 0


def test_a_damaged_file_magic_loses_no_frame_and_is_reported(tmp_path: Path) -> None:
    spool = tmp_path / "run-a.tlog"
    write(spool, 3)
    flip(spool, 2)

    frames, damage, _ = read(spool)

    assert [f.seq for f in frames] == [1, 2, 3]
    assert [(d.frames, d.start, d.end) for d in damage] == [(0, 0, 8)]
    assert "no frame lost" in damage[0].describe()


def test_garbage_between_two_frames_is_skipped_and_reported_without_losing_a_frame(tmp_path: Path) -> None:
    spool = tmp_path / "run-a.tlog"
    starts = write(spool, 4)
    data = spool.read_bytes()
    spool.write_bytes(data[: starts[2]] + b"\xa7TLF junk that is no frame" + data[starts[2] :])

    frames, damage, _ = read(spool)

    assert [f.seq for f in frames] == [1, 2, 3, 4]
    assert [(d.frames, d.bytes) for d in damage] == [(0, 26)]


def test_a_spool_cut_anywhere_in_its_last_frame_reads_every_frame_before_it_as_a_torn_tail(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "run-a.tlog"
    starts = write(spool, 3)
    whole = spool.read_bytes()
    for cut in range(starts[2] + 1, len(whole)):
        spool.write_bytes(whole[:cut])

        frames, damage, tail = read(spool)

        assert ([f.seq for f in frames], damage, tail) == ([1, 2], [], cut - starts[2]), cut


def test_recover_cuts_a_torn_end_but_leaves_damage_in_the_middle_on_disk(tmp_path: Path) -> None:
    spool = tmp_path / "run-a.tlog"
    starts = write(spool, 5)
    flip(spool, starts[1] + HEADER.size + 3)
    damaged = spool.read_bytes()
    spool.write_bytes(damaged + b"\xa7TLF\x10\x00")  # and a torn end after frame 5

    recovery = recover(spool)

    assert spool.read_bytes() == damaged  # only the torn end went
    assert (recovery.last_seq, recovery.truncated_bytes) == (5, 6)
    assert [(d.first_seq, d.last_seq, d.rows) for d in recovery.damage] == [(2, 2, 10)]


def test_a_writer_opening_a_damaged_spool_keeps_the_damage_and_appends_after_the_last_frame(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "run-a.tlog"
    starts = write(spool, 5)
    flip(spool, starts[2] + HEADER.size)

    writer = SpoolWriter(spool)
    writer.append([(6, history_record(50, 10))])
    writer.close()

    frames, damage, _ = read(spool)
    assert [f.seq for f in frames] == [1, 2, 4, 5, 6]
    assert [(d.first_seq, d.last_seq) for d in damage] == [(3, 3)]


def v1_spool(path: Path, payloads: list[bytes]) -> None:
    out = [MAGIC_V1]
    for seq, payload in enumerate(payloads, 1):
        crc = zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seq)))
        out.append(struct.pack("<IIQ", len(payload), crc, seq) + payload)
    path.write_bytes(b"".join(out))


def test_a_spool_of_the_first_format_is_read_and_a_writer_upgrades_it_before_appending(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "run-a.tlog"
    payloads = [history_record(0, 4), history_record(4, 4)]
    v1_spool(spool, payloads)

    frames, damage, _ = read(spool)
    assert [(f.seq, f.payload, f.rows) for f in frames] == [(1, payloads[0], 4), (2, payloads[1], 4)]
    assert damage == []

    writer = SpoolWriter(spool)
    assert writer.last_seq == 2
    writer.append([(3, history_record(8, 4))])
    writer.close()

    assert spool.read_bytes()[:8] == MAGIC
    assert [(f.seq, f.rows) for f in read(spool)[0]] == [(1, 4), (2, 4), (3, 4)]


def test_a_file_that_is_not_a_spool_is_refused_by_name(tmp_path: Path) -> None:
    other = tmp_path / "run-a.tlog"
    other.write_bytes(b"hello, this is not a spool at all" * 10)

    with pytest.raises(SpoolError, match="is not a tracklog spool"):
        read(other)


def test_a_second_writer_on_a_spool_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    spool = tmp_path / "run-a.tlog"
    first = SpoolWriter(spool)
    first.append([(1, b"\x32\x00")])

    with pytest.raises(SpoolError, match=rf"being written by process {os.getpid()}\b.*one writer"):
        SpoolWriter(spool)

    first.close()
    second = SpoolWriter(spool)  # the lock goes with the first writer
    assert second.last_seq == 1
    second.close()


def test_a_writer_in_another_process_is_refused_and_told_which_process_holds_the_spool(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "run-a.tlog"
    writer = SpoolWriter(spool)
    try:
        code = (
            "import sys\nfrom tracklog._spool import SpoolWriter, SpoolError\n"
            "try:\n    SpoolWriter(sys.argv[1])\nexcept SpoolError as exc:\n    print(exc)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(spool)], capture_output=True, text=True, check=True
        )
    finally:
        writer.close()

    assert f"is being written by process {os.getpid()}" in out.stdout


@pytest.mark.parametrize("error", [errno.EIO, errno.EROFS, errno.EDQUOT])
def test_a_failed_append_leaves_nothing_of_its_frames_and_the_next_one_writes_them(
    tmp_path: Path, error: int
) -> None:
    spool = tmp_path / "run-a.tlog"
    ops = FailingFileOps(error)
    writer = SpoolWriter(spool, ops=ops)
    writer.append([(1, history_record(0, 5))])
    size = spool.stat().st_size
    ops.write_fails = 1

    with pytest.raises(OSError, match=os.strerror(error)) as failed:
        writer.append([(2, history_record(5, 5)), (3, history_record(10, 5))])

    assert failed.value.errno == error
    assert writer.last_seq == 1
    assert spool.stat().st_size == size  # half a batch was written, and cut back
    assert writer.append([(2, history_record(5, 5)), (3, history_record(10, 5))]) == 3
    writer.close()
    frames, damage, tail = read(spool)
    assert ([f.seq for f in frames], damage, tail) == ([1, 2, 3], [], 0)


def test_when_the_cut_after_a_failed_append_fails_too_the_next_append_cuts_first(tmp_path: Path) -> None:
    spool = tmp_path / "run-a.tlog"
    ops = FailingFileOps(errno.EIO)
    writer = SpoolWriter(spool, ops=ops)
    writer.append([(1, history_record(0, 5))])
    size = spool.stat().st_size
    ops.write_fails, ops.cut_fails = 1, 2

    with pytest.raises(OSError, match="Input/output error"):
        writer.append([(2, history_record(5, 5))])
    assert spool.stat().st_size > size  # the partial frame is still there ...
    assert [f.seq for f in read(spool)[0]] == [1]  # ... and no reader takes it for a frame
    with pytest.raises(OSError, match="Input/output error"):
        writer.append([(2, history_record(5, 5))])  # cannot cut yet: refuses to write after it

    assert writer.append([(2, history_record(5, 5))]) == 2
    writer.close()
    frames, damage, tail = read(spool)
    assert ([f.seq for f in frames], damage, tail) == ([1, 2], [], 0)


def test_a_failed_fsync_keeps_the_writer_dirty_so_that_the_next_sync_tries_again(tmp_path: Path) -> None:
    ops = FailingFileOps(errno.EIO)
    writer = SpoolWriter(tmp_path / "run-a.tlog", ops=ops)
    writer.append([(1, b"\x32\x00")])
    ops.sync_fails = 1

    with pytest.raises(OSError, match="Input/output error"):
        writer.sync()
    assert (writer.dirty, writer.synced_seq) == (True, 0)
    writer.sync()
    assert (writer.dirty, writer.synced_seq) == (False, 1)
    writer.close()


def test_appends_on_a_full_disk_fail_whole_and_resume_when_space_returns(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        spool = disk / "run-a.tlog"
        writer = SpoolWriter(spool)
        filler = fill(disk, 64 * 1024)
        seq, refused = 0, None
        while refused is None:
            try:
                writer.append([(seq + 1, history_record(seq * 200, 200))])
                seq += 1
            except OSError as exc:
                refused = exc
        size = spool.stat().st_size
        assert refused.errno == errno.ENOSPC
        assert writer.last_seq == seq
        frames, damage, tail = read(spool)
        assert ([f.seq for f in frames], damage, tail) == (list(range(1, seq + 1)), [], 0)
        assert frames[-1].end == size  # nothing of the refused frame is left

        filler.unlink()
        assert writer.append([(seq + 1, history_record(seq * 200, 200))]) == seq + 1
        writer.close()
        frames, damage, tail = read(spool)
        assert ([f.seq for f in frames], damage, tail) == (list(range(1, seq + 2)), [], 0)


@st.composite
def damaged_spools(draw: st.DrawFn) -> tuple[list[int], list[int], int | None]:
    sizes = draw(st.lists(st.integers(0, 40), min_size=1, max_size=12))
    flips = draw(st.lists(st.integers(0, 10**6), max_size=3))
    cut = draw(st.none() | st.integers(0, 10**6))
    return sizes, flips, cut


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=damaged_spools())
def test_after_any_flips_and_cuts_every_untouched_frame_is_read_and_every_damaged_one_reported(
    tmp_path: Path, case: tuple[list[int], list[int], int | None]
) -> None:
    sizes, flips, cut = case
    spool = tmp_path / "run-p.tlog"
    spool.unlink(missing_ok=True)
    writer = SpoolWriter(spool)
    for seq, rows in enumerate(sizes, 1):
        writer.append([(seq, history_record(seq * 100, rows) if rows else b"\x32\x00")])
    writer.close()
    data = bytearray(spool.read_bytes())
    bounds = [f.end for f in read(spool)[0]]
    starts = [len(MAGIC), *bounds[:-1]]
    hit = {len(MAGIC) + at % (len(data) - len(MAGIC)) for at in flips}  # the magic has its own test
    for at in hit:
        data[at] ^= 0xFF
    length = len(data) if cut is None else len(MAGIC) + cut % (len(data) - len(MAGIC) + 1)
    spool.write_bytes(bytes(data[:length]))

    frames, damage, _ = read(spool)

    touched = {
        seq
        for seq, (start, end) in enumerate(zip(starts, bounds, strict=True), 1)
        if end > length or any(start <= at < end for at in hit)
    }
    read_seqs = [f.seq for f in frames]
    assert read_seqs == sorted(set(range(1, len(sizes) + 1)) - touched)
    # Every damaged frame before the last good one is reported; those after it are the torn tail.
    last_read = max(read_seqs, default=0)
    reported = [s for d in damage for s in range(d.first_seq, d.last_seq + 1)]
    assert reported == sorted(s for s in touched if s < last_read)
    for d in damage:
        if d.rows_known:
            assert d.rows == sum(sizes[s - 1] for s in range(d.first_seq, d.last_seq + 1))


def test_a_first_format_spool_with_a_partial_frame_in_the_middle_keeps_every_frame_after_it(
    tmp_path: Path,
) -> None:
    # What the older daemon left when a write failed: half a frame, then the client's resend of it.
    spool = tmp_path / "run-a.tlog"
    payloads = [history_record(step * 5, 5) for step in range(4)]
    v1_spool(spool, payloads)
    data = spool.read_bytes()
    third = len(MAGIC_V1) + 2 * (16 + len(payloads[0]))
    spool.write_bytes(data[:third] + data[third : third + 30] + data[third:])

    frames, damage, tail = read(spool)

    assert [f.seq for f in frames] == [1, 2, 3, 4]
    assert [(d.frames, d.bytes) for d in damage] == [(0, 30)]
    assert tail == 0
    writer = SpoolWriter(spool)  # upgrades it, keeping the damaged original beside it
    writer.append([(5, history_record(20, 5))])
    writer.close()
    assert [f.seq for f in read(spool)[0]] == [1, 2, 3, 4, 5]
    assert (tmp_path / "run-a.tlog.v1-damaged").read_bytes()[:8] == MAGIC_V1


def test_a_frame_lost_from_a_first_format_spool_stays_a_reported_gap_after_the_upgrade(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "run-a.tlog"
    v1_spool(spool, [history_record(step * 5, 5) for step in range(4)])
    flip(spool, len(MAGIC_V1) + (16 + len(history_record(0, 5))) + 20)  # frame 2's payload

    assert [(d.first_seq, d.last_seq) for d in read(spool)[1]] == [(2, 2)]
    SpoolWriter(spool).close()

    frames, damage, _ = read(spool)
    assert spool.read_bytes()[:8] == MAGIC
    assert [f.seq for f in frames] == [1, 3, 4]
    assert [(d.first_seq, d.last_seq, d.bytes) for d in damage] == [(2, 2, 0)]
