"""A torn end whose writer is gone for good is reported on the run, not only in daemon.log: the
daemon's own spool (its writer was the daemon that died) and the client spool of a run whose training
process is gone (it cannot send the cut frames again). The daemon records the loss as a FramesLost in
the cut frame's place, so the spool and the store keep one unbroken sequence."""

from __future__ import annotations

import os
from pathlib import Path

from tests.daemon.helpers import MakeDaemon
from tracklog._spool import SpoolWriter, frames
from tracklog.v1 import records_pb2
from tracklogd._own import own_spool_path
from tracklogd._pending import PendingDir, PendingEntry
from tracklogd._records import spool_path, system_record
from tracklogd.testing import FakeStoreServer, history, make_ref, run_start

KEY = "me/proj/run1"


def _cut_in_last_frame(path: Path) -> None:
    ends = [f.end for f in frames(path)]
    os.truncate(path, ends[-2] + 40)  # the last frame's header survives; its payload is cut


GONE_PID = 4343  # not among the live pids of the daemon's FakePids


def _pending_run(home: Path, run_dir: Path, client_frames: int) -> Path:
    ref = make_ref()
    run_dir.mkdir(parents=True, exist_ok=True)
    spool = spool_path(run_dir, "run1")
    writer = SpoolWriter(spool)
    rows = [(seq, history(seq - 2, x=1.0)) for seq in range(2, client_frames + 1)]
    writer.append([(1, run_start(ref)), *rows])
    writer.close()
    PendingDir(home / "pending").write(PendingEntry(KEY, str(run_dir), str(spool), "", GONE_PID))
    return spool


def test_a_torn_end_of_the_daemons_own_spool_found_at_recovery_is_recorded_on_the_run(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, home: Path
) -> None:
    _pending_run(home, run_dir, 3)
    own = own_spool_path(run_dir, "run1")
    writer = SpoolWriter(own)
    windows = [system_record([(1.7e9 + i, {"cpu": float(i)})]) for i in range(3)]
    writer.append(list(enumerate(windows, 1)))
    writer.close()
    _cut_in_last_frame(own)

    make_daemon()

    assert store.store.wait_for(lambda: len(store.store.daemon_seqs(KEY)) >= 3)
    assert store.store.daemon_seqs(KEY)[:3] == [1, 2, 3]
    lost = store.store.daemon_records(KEY)[2]
    assert lost.WhichOneof("kind") == "lost"
    assert (lost.lost.file, lost.lost.first_seq, lost.lost.last_seq) == (own.name, 3, 3)
    assert "the end of the file after frame 2 was cut short" in lost.lost.reason
    assert [f.seq for f in frames(own)][:3] == [1, 2, 3]  # the spool says so too, in the same place


def test_a_torn_end_of_a_run_whose_training_process_is_gone_is_lost_and_recorded_before_its_crash(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, home: Path
) -> None:
    spool = _pending_run(home, run_dir, 5)
    _cut_in_last_frame(spool)  # frame 5 (one history row) is cut; its process is gone

    make_daemon()

    assert store.store.wait_for_seq(KEY, 6)
    kinds = [r.WhichOneof("kind") for r in store.store.records(KEY)]
    assert kinds == ["start", "history", "history", "history", "lost", "finish"]
    lost = store.store.records(KEY)[4].lost
    assert (lost.first_seq, lost.last_seq, lost.rows, lost.rows_known) == (5, 5, 1, False)
    assert store.store.records(KEY)[5].finish.state == records_pb2.RUN_STATE_CRASHED


def test_a_daemons_own_spool_whose_start_is_damaged_is_read_from_its_next_good_frame_and_the_loss_sent(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, home: Path
) -> None:
    _pending_run(home, run_dir, 3)
    own = own_spool_path(run_dir, "run1")
    writer = SpoolWriter(own)
    windows = [system_record([(1.7e9 + i, {"cpu": float(i)})]) for i in range(3)]
    writer.append(list(enumerate(windows, 1)))
    writer.close()
    data = bytearray(own.read_bytes())
    data[0:20] = bytes(20)  # the magic and the first frame's header: no longer a spool by its start
    own.write_bytes(bytes(data))

    make_daemon()

    assert store.store.wait_for(lambda: len(store.store.daemon_seqs(KEY)) >= 2)
    lost, *kept = store.store.daemon_records(KEY)[:3]
    assert store.store.daemon_seqs(KEY)[:2] == [1, 2]
    assert (lost.lost.first_seq, lost.lost.last_seq) == (1, 1)
    assert [r.WhichOneof("kind") for r in kept] == ["system", "system"]
