"""The SDK's last resort at finish (writing unacked frames straight into the spool) never writes into a
spool another writer holds, such as a live but stalled daemon: the frames go to a rescue file beside
it instead, and the warning says where."""

from __future__ import annotations

import os
from pathlib import Path

from tests.tmpfs import fill, small_tmpfs
from tracklog import _home
from tracklog._init import _spool_fallback
from tracklog._rescue import read_rescue
from tracklog._sender import Sender
from tracklog._spool import SpoolWriter
from tracklog._transport import DaemonTransport, SpoolTransport
from tracklog.testing import history_rows, read_records
from tracklog.v1 import daemon_pb2, records_pb2
from tracklogd.testing import wait_until


def test_the_fallback_never_writes_into_a_spool_the_daemon_holds_and_rescues_the_frames_beside_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    _home.ensure_home(home)
    spool = tmp_path / "run-r1.tlog"
    daemon_side = SpoolWriter(spool)  # the daemon's writer: it acked frame 1 and holds the spool
    ref = records_pb2.RunRef(entity="e", project="p", id="r1")
    daemon_side.append([(1, records_pb2.Record(start=records_pb2.RunStart(ref=ref)).SerializeToString())])
    before = spool.read_bytes()
    attach = daemon_pb2.Attach(ref=ref, run_dir=str(tmp_path), pid=os.getpid())
    transport = DaemonTransport(home, attach, start_timeout=0.1, spawn=False)  # never reaches it
    warnings: list[str] = []
    sender = Sender(
        transport, warn=warnings.append, flush_interval=0.01, fallback=_spool_fallback(spool),
        finish_timeout=0.5, last_seq=1,
    )  # fmt: skip
    assert not sender.connect_now(timeout=5)
    sender.start()
    for step in range(100):
        sender.queue.append((step, 1.0e9 + step, {"x": float(step)}))

    assert sender.close(timeout=30)  # nothing is left in memory: all of it is on disk

    assert spool.read_bytes() == before  # nothing written behind the daemon's back
    rescue = tmp_path / f"run-r1.tlog.rescue-{os.getpid()}"
    found, damage = read_rescue(rescue)
    assert [(f.seq, f.rows) for f in found] == [(2, 100)]
    assert damage == []
    told = [w for w in warnings if "did not acknowledge" in w]
    assert told == [
        "the tracklog daemon did not acknowledge 1 frame (100 history rows) in time; they were written "
        f"to {rescue}; the daemon holds the run's spool and adds them to it when it goes on (or when it "
        "starts again), as `tracklog sync` on the run directory does once no daemon holds it"
    ]
    daemon_side.close()


def test_an_offline_run_on_a_full_disk_keeps_its_rows_and_writes_them_once_space_returns(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        spool = disk / "run-r1.tlog"
        warnings: list[str] = []
        sender = Sender(SpoolTransport(spool), warn=warnings.append, flush_interval=0.01)
        sender.queue.append(records_pb2.Record(config=records_pb2.ConfigUpdate(items_json="{}")))
        assert sender.connect_now(timeout=5)
        sender.start()
        filler = fill(disk, 32 * 1024)
        wide = {f"k{i}": float(i) for i in range(50)}
        for step in range(2000):  # about 1 MB of rows: more than the disk has left
            sender.queue.append((step, 1.0e9 + step, wide))
        assert wait_until(lambda: not sender.queue and sender.pending_frames > 0)
        assert wait_until(lambda: bool(warnings))  # the user hears of it (just after the failed write)

        filler.unlink()
        assert sender.close(timeout=30)

        records = read_records(disk)
        assert [seq for seq, _ in records] == list(range(1, len(records) + 1))
        assert [r["_step"] for r in history_rows(records)] == list(range(2000))
