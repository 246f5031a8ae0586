"""The daemon as a real process (``python -m tracklogd``), started, signalled and killed for real."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import tracklogd
from tests.daemon.helpers import SpawnDaemon, local_server
from tracklog import _home
from tracklog._spool import SpoolWriter
from tracklog._spool import frames as spool_frames
from tracklog.v1 import records_pb2
from tracklogd.testing import FakeStoreServer, RunStreamClient, frames, make_ref, wait_until

KEY = "me/proj/run1"

pytestmark = pytest.mark.slow


def spool_records(run_dir: Path) -> list[tuple[int, records_pb2.Record]]:
    return [
        (f.seq, records_pb2.Record.FromString(f.payload)) for f in spool_frames(run_dir / "run-run1.tlog")
    ]


def test_a_second_daemon_for_the_same_home_exits_at_once_without_error(
    spawn_daemon: SpawnDaemon, home: Path
) -> None:
    first = spawn_daemon()

    second = subprocess.run(
        [sys.executable, "-m", "tracklogd", "--home", str(home)], capture_output=True, timeout=30, check=False
    )

    assert second.returncode == 0
    assert second.stdout == second.stderr == b""
    response = tracklogd.status(home)
    assert response is not None
    assert response.pid == first.proc.pid


@pytest.fixture
def detached(home: Path, store: FakeStoreServer) -> Iterator[Path]:
    """A home whose local server is the fake store; any daemon started on it is stopped at the end."""
    (home / "server.json").write_text(json.dumps({"grpc": store.target, "http": "", "pid": os.getpid()}))
    yield home
    tracklogd.stop(home, timeout=15)


def test_start_status_ensure_running_and_stop_drive_a_detached_daemon(detached: Path) -> None:
    home = detached
    assert tracklogd.status(home) is None

    tracklogd.start(home, timeout=15)

    response = tracklogd.status(home)
    assert response is not None
    assert response.pid != os.getpid()
    assert response.version == tracklogd.__version__
    assert response.started_at > 0
    assert wait_until(lambda: local_server(home) != "")
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(_home.socket_path(home)).st_mode) == 0o600
    info = json.loads((home / "daemon.json").read_text())
    assert info["pid"] == response.pid
    assert info["target"] == _home.daemon_target(home)
    assert info["version"] == tracklogd.__version__
    assert tracklogd.ensure_running(home) == _home.daemon_target(home)
    again = tracklogd.status(home)
    assert again is not None
    assert again.pid == response.pid  # no second daemon

    assert tracklogd.stop(home, timeout=15)

    assert tracklogd.status(home) is None
    assert not _home.socket_path(home).exists()
    assert not (home / "daemon.json").exists()
    assert tracklogd.stop(home)  # nothing left to stop


def test_ensure_running_starts_a_daemon_when_none_answers(detached: Path) -> None:
    target = tracklogd.ensure_running(detached, timeout=15)

    assert target == _home.daemon_target(detached)
    assert tracklogd.status(detached) is not None


def test_a_killed_daemon_is_replaced_and_the_resent_frames_reach_the_store_exactly_once(
    spawn_daemon: SpawnDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    ref = make_ref()
    batch = frames(ref, 100, finished=True)  # seqs 1..102
    first = spawn_daemon()
    client = RunStreamClient(first.target, ref, str(run_dir), pid=os.getpid(), server=store.target)
    client.attach()
    for i in range(0, 40, 5):
        acked = client.send(batch[i : i + 5])
    for i in range(40, 80, 5):
        client.send_nowait(batch[i : i + 5])  # in flight when the daemon dies

    first.kill(signal.SIGKILL)
    client.cancel()
    second = spawn_daemon()
    with RunStreamClient(second.target, ref, str(run_dir), pid=os.getpid(), server=store.target) as again:
        durable = again.attach().durable_seq
        # The client resends everything it did not see acked; the daemon skips what it holds.
        assert again.send(batch[acked:]) == 102
        again.close()

    assert acked <= durable <= 80
    assert store.store.wait_for_seq(KEY, 102)
    assert store.store.seqs(KEY) == list(range(1, 103))
    assert [seq for seq, _ in spool_records(run_dir)] == list(range(1, 103))
    assert store.store.records(KEY)[-1].finish.state == records_pb2.RUN_STATE_FINISHED


def test_a_killed_training_process_gets_a_crashed_finish(
    spawn_daemon: SpawnDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    daemon = spawn_daemon()
    trainer_py = Path(__file__).with_name("trainer.py")
    command = [sys.executable, str(trainer_py), daemon.target, str(run_dir), store.target, "5"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as trainer:
        assert trainer.stdout is not None
        assert trainer.stdout.readline().strip() == "ready"

        trainer.send_signal(signal.SIGKILL)
        trainer.wait()

    assert store.store.wait_for_seq(KEY, 7)
    seq, last = spool_records(run_dir)[-1]
    assert seq == 7
    assert last.finish.state == records_pb2.RUN_STATE_CRASHED
    assert last.finish.exit_code == -1
    assert last.finish.reason == f"training process {trainer.pid} vanished"
    assert store.store.records(KEY)[-1] == last


def test_sigterm_stops_the_daemon_cleanly_and_the_run_stays_pending(
    spawn_daemon: SpawnDaemon, run_dir: Path, store: FakeStoreServer, home: Path
) -> None:
    daemon = spawn_daemon()
    with RunStreamClient(
        daemon.target, make_ref(), str(run_dir), pid=os.getpid(), server=store.target
    ) as client:
        client.attach()
        client.send(frames(make_ref(), 3))

        assert daemon.kill(signal.SIGTERM) == 0

        error = client.wait_ended()
        assert isinstance(error, grpc.Call)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert [seq for seq, _ in spool_records(run_dir)] == [1, 2, 3, 4]
    assert not _home.socket_path(home).exists()
    assert not (home / "daemon.json").exists()
    assert (home / "pending" / "me+proj+run1.json").exists()
    assert "stopped" in (home / "daemon.log").read_text()


def test_an_idle_daemon_process_exits_by_itself(spawn_daemon: SpawnDaemon, home: Path) -> None:
    daemon = spawn_daemon(TRACKLOG_DAEMON_IDLE_TIMEOUT="0.3")

    assert daemon.proc.wait(timeout=15) == 0

    assert "idle" in (home / "daemon.log").read_text()
    assert tracklogd.status(home) is None


def test_a_new_daemon_process_cuts_a_torn_spool_and_syncs_what_was_good(
    spawn_daemon: SpawnDaemon, run_dir: Path, store: FakeStoreServer, home: Path
) -> None:
    # What a daemon killed mid-write leaves: a spool with half a frame at its end, a pending entry.
    run_dir.mkdir(parents=True)
    spool = run_dir / "run-run1.tlog"
    writer = SpoolWriter(spool)
    writer.append(frames(make_ref(), 3))
    writer.close()
    good = spool.stat().st_size
    first_frame_head = spool.read_bytes()[8:40]
    with open(spool, "ab") as f:
        f.write(first_frame_head)  # the first 32 bytes of a frame
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    entry = {"ref": KEY, "run_dir": str(run_dir), "spool": str(spool), "server": store.target}
    (home / "pending").mkdir(mode=0o700)
    (home / "pending" / "me+proj+run1.json").write_text(json.dumps({**entry, "pid": int(gone.stdout)}))

    spawn_daemon()

    assert store.store.wait_for_seq(KEY, 6)
    records = spool_records(run_dir)
    assert [seq for seq, _ in records] == [1, 2, 3, 4, 5, 6]
    # Its process is gone and cannot send the cut frame again: the loss is recorded in its place.
    assert records[4][1].lost.first_seq == 5
    assert records[-1][1].finish.state == records_pb2.RUN_STATE_CRASHED
    assert spool.stat().st_size > good
    assert wait_until(lambda: not (home / "pending" / "me+proj+run1.json").exists())
    assert "cut a torn tail of 32 bytes" in (home / "daemon.log").read_text()


def test_a_run_without_a_server_goes_to_the_local_server_named_in_server_json(
    spawn_daemon: SpawnDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    daemon = spawn_daemon()
    assert wait_until(
        lambda: (tracklogd.status(daemon.home) or records_pb2.RunRef()).local_server == store.target
    )

    with RunStreamClient(daemon.target, make_ref(), str(run_dir), pid=os.getpid()) as client:
        attached = client.attach()
        client.send(frames(make_ref(), 2, finished=True))
        client.close()

    assert attached.url == "http://store.test/me/proj/runs/run1"
    assert store.store.wait_for_seq(KEY, 4)


def test_start_reports_a_daemon_that_cannot_start_and_points_at_its_log(home: Path) -> None:
    _home.socket_path(home).mkdir()  # a directory where the socket must go

    with pytest.raises(tracklogd.DaemonError, match=r"exited with code 1; see .*daemon\.log"):
        tracklogd.start(home, timeout=15)

    assert "tracklogd failed" in (home / "daemon.log").read_text()
