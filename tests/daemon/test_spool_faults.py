"""The daemon when its disk fails: a full disk (a real tmpfs), EIO and EROFS (an injected file layer),
and spools damaged on disk. Nothing acked is lost, nothing partial stays, nothing fails silently."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from tests.daemon.helpers import CLIENT_PID, MakeDaemon
from tests.tmpfs import fill, small_tmpfs
from tracklog._spool import HEADER, frames, scan
from tracklog.testing import FailingFileOps
from tracklog.v1 import records_pb2
from tracklogd.testing import (
    FakePids,
    FakeStoreServer,
    RunStreamClient,
    finish,
    history,
    make_ref,
    run_start,
    wait_until,
)

KEY = "me/proj/run1"
WIDE = {f"metric_{i:03d}": float(i) for i in range(400)}  # about 10 kB per one-row frame


def client_for(target: str, run_dir: Path) -> RunStreamClient:
    return RunStreamClient(target, make_ref(), str(run_dir), pid=CLIENT_PID)


def wide_frames(first: int, count: int) -> list[tuple[int, bytes]]:
    return [(seq, history(seq - 2, **WIDE)) for seq in range(first, first + count)]


def spool_state(spool: Path) -> tuple[list[int], int]:
    with scan(spool) as found:
        seqs = [item.seq for item in found.frames()]
    return seqs, found.tail_bytes


def test_a_full_disk_is_acked_with_its_error_on_a_live_stream_and_every_frame_arrives_once_when_space_returns(
    make_daemon: MakeDaemon, tmp_path: Path, store: FakeStoreServer, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = make_daemon()
    with small_tmpfs(tmp_path / "disk", "1m") as disk, client_for(daemon.target, disk / "run") as client:
        spool = disk / "run" / "run-run1.tlog"
        client.attach()
        assert client.send([(1, run_start(make_ref()))]) == 1
        filler = fill(disk, 48 * 1024)
        caplog.set_level(logging.ERROR, logger="tracklogd._runs")

        sent, ack = 1, client.send_for_ack(wide_frames(2, 1))
        while not ack.error:
            assert ack.durable_seq == sent + 1
            sent += 1
            ack = client.send_for_ack(wide_frames(sent + 1, 1))
        # Frames after the refused one, sent before the client heard of it: refused the same way.
        later = client.send_for_ack(wide_frames(sent + 2, 3))
        asked = client.send_for_ack([])  # a client asking where it stands hears the error too

        assert ack.error == f"cannot write {spool}: No space left on device"
        assert (ack.durable_seq, later.durable_seq, later.error) == (sent, sent, ack.error)
        assert (asked.durable_seq, asked.error) == (sent, ack.error)
        assert client.error is None  # the stream goes on
        assert spool_state(spool) == (list(range(1, sent + 1)), 0)  # nothing partial stays
        refused = [r for r in caplog.records if "No space left on device" in r.getMessage()]
        assert len(refused) == 1  # logged once, not once per attempt

        filler.unlink()
        resent = client.send_for_ack(wide_frames(sent + 1, 4))
        assert (resent.durable_seq, resent.error) == (sent + 4, "")
        assert client.send([*wide_frames(sent + 5, 1), (sent + 6, finish())]) == sent + 6

        assert store.store.wait_for_seq(KEY, sent + 6)
        assert store.store.seqs(KEY) == list(range(1, sent + 7))  # each once
        assert spool_state(spool) == (list(range(1, sent + 7)), 0)
        client.close()
        assert wait_until(lambda: not daemon.status().runs)  # the spool is let go before unmounting


@pytest.mark.parametrize("error", [errno.EIO, errno.EROFS])
def test_a_write_the_disk_refuses_is_acked_with_the_error_and_the_resend_is_written(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, error: int
) -> None:
    ops = FailingFileOps(error)
    daemon = make_daemon(spool_ops=ops)
    with client_for(daemon.target, run_dir) as client:
        client.attach()
        assert client.send([(1, run_start(make_ref())), *wide_frames(2, 2)]) == 3
        ops.write_fails = 1

        refused = client.send_for_ack(wide_frames(4, 2))
        again = client.send_for_ack(wide_frames(4, 2))

        assert (refused.durable_seq, refused.error) == (
            3,
            f"cannot write {run_dir}/run-run1.tlog: {os.strerror(error)}",
        )
        assert (again.durable_seq, again.error) == (5, "")
        assert spool_state(run_dir / "run-run1.tlog") == ([1, 2, 3, 4, 5], 0)


def test_a_finish_whose_fsync_fails_is_not_acked_until_an_fsync_succeeds(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    ops = FailingFileOps(errno.EIO)
    daemon = make_daemon(spool_ops=ops)
    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send([(1, run_start(make_ref())), (2, history(0))])
        ops.sync_fails = 1

        first = client.send_for_ack([(3, finish())])
        second = client.send_for_ack([(3, finish())])

    assert (first.durable_seq, first.error) == (
        2,
        f"cannot fsync {run_dir}/run-run1.tlog: Input/output error",
    )
    assert (second.durable_seq, second.error) == (3, "")


def test_a_crashed_finish_the_disk_refuses_is_written_once_the_disk_takes_it(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, pids: FakePids
) -> None:
    ops = FailingFileOps(errno.ENOSPC)
    daemon = make_daemon(spool_ops=ops, watch_interval=0.02)
    client = client_for(daemon.target, run_dir)
    client.attach()
    client.send([(1, run_start(make_ref())), (2, history(0))])
    assert store.store.wait_for_seq(KEY, 2)
    ops.write_fails = 3  # the crashed Finish fails three times, then goes through

    pids.alive.clear()
    client.cancel()

    assert store.store.wait_for_seq(KEY, 3)
    assert ops.write_fails == 0
    last = store.store.records(KEY)[-1]
    assert (last.WhichOneof("kind"), last.finish.state) == ("finish", records_pb2.RUN_STATE_CRASHED)
    assert [f.seq for f in frames(run_dir / "run-run1.tlog")] == [1, 2, 3]


def test_a_byte_flipped_in_a_live_spool_costs_its_frame_which_the_store_hears_of_as_lost(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    store.store.unavailable = True  # nothing syncs before the damage
    daemon = make_daemon()
    spool = run_dir / "run-run1.tlog"
    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send([(1, run_start(make_ref())), *((seq, history(seq - 2, **WIDE)) for seq in range(2, 11))])
        found = list(frames(spool))
        with open(spool, "r+b") as f:  # a byte of frame 6's payload goes bad on disk
            f.seek(found[4].end + HEADER.size + 100)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x01]))
        store.store.unavailable = False
        client.send([(11, finish())])

        assert store.store.wait_for_seq(KEY, 11)

    assert store.store.seqs(KEY) == list(range(1, 12))
    lost = store.store.records(KEY)[5]
    assert lost.WhichOneof("kind") == "lost"
    assert (lost.lost.first_seq, lost.lost.last_seq, lost.lost.rows, lost.lost.rows_known) == (6, 6, 1, True)
    assert lost.lost.file == "run-run1.tlog"
    assert "payload crc" in lost.lost.reason
    assert [r.WhichOneof("kind") for r in store.store.records(KEY)][6:] == ["history"] * 4 + ["finish"]
    assert spool.stat().st_size == found[-1].end + HEADER.size + len(finish())  # the damage stays on disk
