"""The daemon's own spool of a run (``run-<id>.daemon.tlog``): synced in a sequence of its own once
the store knows the run; across daemon restarts both sequences resume where they stopped, and a run
is let go only once both spools are synced."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon.helpers import CLIENT_PID, MakeDaemon, SpawnDaemon
from tracklog._spool import SpoolWriter, read_synced
from tracklog._spool import frames as spool_frames
from tracklog.v1 import records_pb2, store_pb2
from tracklogd import GrpcStoreClient, SpoolSync, StoreRejected, status, sync_own_spool
from tracklogd._own import own_spool_path
from tracklogd._records import metadata_record, system_record
from tracklogd.testing import (
    FakeCounters,
    FakeStoreServer,
    RunStreamClient,
    finish,
    frames,
    make_ref,
    wait_until,
)

KEY = "me/proj/run1"
FAST_ENV = {
    "TRACKLOG_SYSTEM_SAMPLE_INTERVAL": "0.1",
    "TRACKLOG_SYSTEM_REPORT_INTERVAL": "0.2",
    "TRACKLOG_METADATA": "false",
}


def own_frames(run_dir: Path) -> list[tuple[int, records_pb2.Record]]:
    path = own_spool_path(run_dir, "run1")
    return (
        [(f.seq, records_pb2.Record.FromString(f.payload)) for f in spool_frames(path)]
        if path.exists()
        else []
    )


@pytest.mark.slow
def test_a_daemon_restart_resumes_both_sequences_of_a_run_whose_training_process_lives_on(
    spawn_daemon: SpawnDaemon, run_dir: Path, store: FakeStoreServer, home: Path
) -> None:
    first = spawn_daemon(**FAST_ENV)
    trainer_py = Path(__file__).with_name("trainer.py")
    command = [sys.executable, str(trainer_py), first.target, str(run_dir), store.target, "3"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as trainer:
        assert trainer.stdout is not None
        assert trainer.stdout.readline().strip() == "ready"
        assert store.store.wait_for(lambda: len(store.store.daemon_seqs(KEY)) >= 3, 20)

        first.kill(signal.SIGKILL)  # the trainer lives on, as a training process whose daemon died
        before = len(own_frames(run_dir))
        second = spawn_daemon(**FAST_ENV)  # recovers the run and samples it again
        assert store.store.wait_for(lambda: len(store.store.daemon_seqs(KEY)) >= before + 3, 20), second.log()

        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
        # The client's sequence goes on too: the new daemon finishes the run as crashed (seq 5),
        # writes the run's last window, syncs both spools and lets the run go.
        assert store.store.wait_for_seq(KEY, 5, 20), second.log()
        assert wait_until(lambda: (s := status(home)) is not None and not s.runs, 20), second.log()

    assert store.store.seqs(KEY) == [1, 2, 3, 4, 5]
    assert store.store.records(KEY)[-1].finish.state == records_pb2.RUN_STATE_CRASHED
    spooled = own_frames(run_dir)
    assert len(spooled) >= before + 3
    assert [seq for seq, _ in spooled] == list(range(1, len(spooled) + 1))  # one sequence, no restart
    assert store.store.daemon_seqs(KEY) == [seq for seq, _ in spooled]
    assert store.store.daemon_records(KEY) == [record for _, record in spooled]
    assert {record.WhichOneof("kind") for _, record in spooled} == {"system"}


def test_a_new_daemon_syncs_what_is_left_of_a_finished_runs_own_spool_and_then_lets_it_go(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, home: Path
) -> None:
    store.store.unavailable = True  # nothing reaches the store while the first daemon runs
    counters = FakeCounters()
    config = {"system_metrics": True, "system_sample_interval": 0.05, "system_report_interval": 3600.0}
    first = make_daemon(metrics_source=counters, nvml=None, **config)
    ref = make_ref()
    with RunStreamClient(first.target, ref, str(run_dir), pid=CLIENT_PID) as client:
        client.attach()
        client.send(frames(ref, 2))
        assert wait_until(lambda: counters.calls["virtual_memory"] >= 2)  # sampled; the window is open
        assert client.send([(4, finish())]) == 4  # the run ends: its last window is written at once
        client.close()
    assert [record.WhichOneof("kind") for _, record in own_frames(run_dir)] == ["system"]
    first.close()
    assert (home / "pending" / "me+proj+run1.json").exists()

    store.store.unavailable = False
    second = make_daemon(metrics_source=counters, nvml=None, **config)

    assert store.store.wait_for_seq(KEY, 4)
    assert wait_until(lambda: not second.status().runs)  # both spools synced: the run is let go
    assert store.store.daemon_records(KEY) == [record for _, record in own_frames(run_dir)]
    assert not (home / "pending" / "me+proj+run1.json").exists()


def test_the_daemons_frames_wait_for_a_run_the_store_does_not_know_and_go_once_its_run_start_is_there(
    tmp_path: Path, store: FakeStoreServer
) -> None:
    ref = make_ref()
    client_spool = tmp_path / "run-run1.tlog"
    writer = SpoolWriter(client_spool)
    writer.append(frames(ref, 1))
    writer.close()
    own = SpoolWriter(own_spool_path(tmp_path, "run1"))
    own.append([(1, system_record([(1.0, {"system/cpu": 1.0})])), (2, metadata_record({"a": 1}))])
    own.close()
    client = GrpcStoreClient(store.target)
    try:
        own_sync = SpoolSync(own_spool_path(tmp_path, "run1"), ref, source=store_pb2.SOURCE_DAEMON)

        assert own_sync.push(client) == 0  # not accepted: no RunStart yet; no error, nothing parked
        assert (own_sync.waiting, own_sync.synced) == (True, 0)
        assert SpoolSync(client_spool).push(client) == 2
        assert own_sync.push(client) == 2
    finally:
        client.close()

    assert (own_sync.waiting, own_sync.synced) == (False, 2)
    assert store.store.daemon_seqs(KEY) == [1, 2]
    assert read_synced(own_spool_path(tmp_path, "run1")) == 2
    assert read_synced(client_spool) == 2  # each spool keeps its own mark
    # `tracklog sync` of a daemon's spool whose run the store does not know says so.
    other = SpoolWriter(own_spool_path(tmp_path, "run2"))
    other.append([(1, metadata_record({"a": 1}))])
    other.close()
    with pytest.raises(StoreRejected, match="does not know run me/proj/run2"):
        sync_own_spool(tmp_path / "run-run2.tlog", store.target, ref=make_ref("run2"))
