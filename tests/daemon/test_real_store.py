"""The daemon against the real store server (``tracklog_server``), not the fake."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from tests.daemon.helpers import CLIENT_PID, DaemonProcess, MakeDaemon, local_server
from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc
from tracklog_server import StoreServer
from tracklogd import sync_spool
from tracklogd.testing import FakePids, RunStreamClient, frames, make_ref, wait_until


@pytest.fixture
def real_store(tmp_path: Path) -> Iterator[StoreServer]:
    server = StoreServer(f"sqlite:///{tmp_path / 'store.db'}", port=0, http_port=0)
    server.start()
    yield server
    server.stop(grace=0)


def get_run(target: str, ref: records_pb2.RunRef) -> store_pb2.RunView | None:
    with grpc.insecure_channel(target) as channel:
        try:
            view: store_pb2.RunView = store_pb2_grpc.StoreStub(channel).GetRun(
                store_pb2.GetRunRequest(ref=ref), timeout=5
            )
        except grpc.RpcError:
            return None
    return view


def run_state(target: str, ref: records_pb2.RunRef) -> int:
    view = get_run(target, ref)
    return view.state if view is not None else -1


def test_an_offline_spool_syncs_into_the_real_store(tmp_path: Path, real_store: StoreServer) -> None:
    from tracklog._spool import SpoolWriter

    ref = make_ref()
    writer = SpoolWriter(tmp_path / "run-run1.tlog")
    writer.append(frames(ref, 50, finished=True))
    writer.close()

    result = sync_spool(writer.path, real_store.grpc_address)
    again = sync_spool(writer.path, real_store.grpc_address)

    assert (result.synced_seq, result.frames_sent, result.finished) == (52, 52, True)
    assert again.frames_sent == 0
    view = get_run(real_store.grpc_address, ref)
    assert view is not None
    assert (view.state, view.history_rows, view.last_seq) == (records_pb2.RUN_STATE_FINISHED, 50, 52)


def test_a_vanished_client_leaves_a_crashed_run_in_the_real_store(
    make_daemon: MakeDaemon, real_store: StoreServer, run_dir: Path, pids: FakePids
) -> None:
    daemon = make_daemon()
    ref = make_ref()
    client = RunStreamClient(daemon.target, ref, str(run_dir), pid=CLIENT_PID, server=real_store.grpc_address)
    client.attach()
    client.send(frames(ref, 10))
    assert wait_until(lambda: run_state(real_store.grpc_address, ref) == records_pb2.RUN_STATE_RUNNING)

    pids.alive.clear()
    client.cancel()

    assert wait_until(lambda: run_state(real_store.grpc_address, ref) == records_pb2.RUN_STATE_CRASHED)
    view = get_run(real_store.grpc_address, ref)
    assert view is not None
    assert (view.history_rows, view.exit_code) == (10, -1)


@pytest.mark.slow
def test_a_daemon_process_starts_its_own_local_store_and_stops_it_when_it_exits(
    home: Path, run_dir: Path
) -> None:
    daemon = DaemonProcess(home, {**os.environ, "TRACKLOG_HEARTBEAT_TIMEOUT": "30"}).wait_ready()
    try:
        assert wait_until(lambda: local_server(home), timeout=60), daemon.log()
        local = local_server(home)
        server_pid = json.loads((home / "server.json").read_text())["pid"]
        ref = make_ref()
        with RunStreamClient(daemon.target, ref, str(run_dir), pid=os.getpid()) as client:
            attached = client.attach()
            client.send(frames(ref, 5, finished=True))
            client.close()

        assert attached.url.startswith("http://127.0.0.1:")
        assert attached.url.endswith("/me/proj/runs/run1")
        assert wait_until(lambda: run_state(local, ref) == records_pb2.RUN_STATE_FINISHED, timeout=20)
        assert (home / "store.db").exists()

        assert daemon.kill(signal.SIGTERM) == 0
        assert not _alive(server_pid)  # the daemon stopped the server it had started
    finally:
        daemon.kill()


@pytest.mark.slow
def test_a_local_store_left_by_a_killed_daemon_is_taken_over_and_stopped_by_the_next(home: Path) -> None:
    env = {**os.environ, "TRACKLOG_HEARTBEAT_TIMEOUT": "30"}
    first = DaemonProcess(home, env).wait_ready()
    assert wait_until(lambda: home_servers(home), timeout=30)  # spawned, perhaps still starting
    first.kill(signal.SIGKILL)

    second = DaemonProcess(home, env).wait_ready()
    try:
        assert wait_until(lambda: local_server(home), timeout=60), second.log()
        (server,) = home_servers(home)  # the first daemon's server, not a second one
        assert local_server(home) == json.loads((home / "server.json").read_text())["grpc"]

        assert second.kill(signal.SIGTERM) == 0

        assert not _alive(server)
        assert home_servers(home) == []
    finally:
        second.kill()


def home_servers(home: Path) -> list[int]:
    """Pids of the running store servers spawned for ``home``."""
    address_file = str(home / "server.json")
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        command = proc.info["cmdline"] or []
        if "tracklog_server" in command and address_file in command and _alive(proc.pid):
            found.append(proc.pid)
    return found


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_a_record_the_real_store_refuses_costs_only_itself_and_the_run_syncs_to_its_end(
    tmp_path: Path, real_store: StoreServer, caplog: pytest.LogCaptureFixture
) -> None:
    from tracklog._history import BatchBuilder
    from tracklog._spool import SpoolWriter

    ref = make_ref("refused-record")  # an id of its own: refusals are logged once per run, process-wide
    good = frames(ref, 4, finished=True)
    builder = BatchBuilder()
    builder.add(10, 1_700_000_010.0, {"": 1.0, "x": 2.0})  # what log() let through before this issue
    bad = records_pb2.Record(history=builder.encode()).SerializeToString()
    writer = SpoolWriter(tmp_path / "run-refused-record.tlog")
    writer.append([*good[:3], (4, bad), *((seq + 1, payload) for seq, payload in good[3:])])
    writer.close()

    result = sync_spool(writer.path, real_store.grpc_address)

    assert (result.synced_seq, result.finished, result.refused) == (7, True, 1)
    view = get_run(real_store.grpc_address, ref)
    assert view is not None
    assert (view.state, view.history_rows, view.rows_lost) == (records_pb2.RUN_STATE_FINISHED, 4, 1)
    assert list(view.problems) == ["record 4 refused (1 history rows): history key '' is empty"]
    assert "the store refused 1 record(s) of run" in caplog.text
