"""The daemon against the real store server (``tracklog_server``), not the fake."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import psutil
import pytest

from tests.daemon.helpers import CLIENT_PID, DaemonProcess, MakeDaemon, local_server
from tracklog._cli import main as cli_main
from tracklog._spool import SpoolWriter, read_synced
from tracklog._spool import frames as spool_frames
from tracklog.testing import FakeClock, spool_of
from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc
from tracklog_server import RunKey, StoreServer
from tracklogd import sync_spool
from tracklogd._store_client import GrpcStoreClient
from tracklogd.testing import FakePids, RunStreamClient, frames, history, make_ref, run_start, wait_until


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
def test_a_daemon_process_starts_its_own_local_store_which_outlives_it_and_keeps_serving_the_run_url(
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

        token = (home / "http-token").read_text().strip()
        assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/me/proj/runs/run1\?token={token}", attached.url)
        assert local == f"unix:{home / 'store.sock'}"  # gRPC on the home's socket, not a TCP port
        assert wait_until(lambda: run_state(local, ref) == records_pb2.RUN_STATE_FINISHED, timeout=20)
        assert (home / "store.db").exists()

        assert daemon.kill(signal.SIGTERM) == 0
        assert _alive(server_pid)  # the run URL printed earlier keeps answering
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with opener.open(attached.url, timeout=10) as page:
            assert page.status == 200
        api = attached.url.split("?")[0].replace("/me/proj/runs/run1", "/api/v1/runs/me/proj/run1")
        with opener.open(api, timeout=10) as answer:
            assert json.loads(answer.read())["state"] == "finished"
    finally:
        daemon.kill()


@pytest.mark.slow
def test_a_local_store_left_by_a_killed_daemon_is_taken_over_by_the_next_and_left_running(home: Path) -> None:
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

        assert _alive(server)
        assert home_servers(home) == [server]  # still one: the next daemon reuses it
    finally:
        second.kill()


@pytest.mark.slow
def test_a_local_store_on_a_tcp_port_left_by_an_older_daemon_is_replaced_by_a_private_one(home: Path) -> None:
    # The command line daemons spawned before the local store moved to a unix socket.
    old = subprocess.Popen(
        [sys.executable, "-m", "tracklog_server", "--db", f"sqlite:///{home / 'store.db'}", "--port", "0",
         "--http-port", "0", "--address-file", str(home / "server.json"), "--heartbeat-timeout", "30"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_until((home / "server.json").exists, timeout=30)
        assert not json.loads((home / "server.json").read_text())["grpc"].startswith("unix:")
        daemon = DaemonProcess(home, {**os.environ, "TRACKLOG_HEARTBEAT_TIMEOUT": "30"}).wait_ready()
        try:
            assert wait_until(lambda: local_server(home).startswith("unix:"), timeout=60), daemon.log()
            assert old.wait(30) == 0  # stopped with SIGTERM, cleanly
            assert "which other users can reach" in daemon.log()
        finally:
            daemon.kill(signal.SIGTERM)
    finally:
        if old.poll() is None:
            old.kill()
        old.wait()


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


TOKEN, OTHER = "1" * 48, "2" * 48


class CountingClient(GrpcStoreClient):
    """The real store client, noting which run each ingest was for and the token it carried."""

    calls: list[tuple[str, str]]

    def ingest(
        self,
        ref: records_pb2.RunRef,
        frames: Sequence[records_pb2.Frame],
        writer_token: str = "",
        source: store_pb2.Source.ValueType = store_pb2.SOURCE_CLIENT,
    ) -> store_pb2.IngestResponse:
        if source == store_pb2.SOURCE_CLIENT:  # the run's own frames (not the daemon's records)
            self.calls.append((ref.id, writer_token))
        return super().ingest(ref, frames, writer_token, source)


def taken_by_another_writer(store: StoreServer, ref: records_pb2.RunRef) -> None:
    """The run exists in the store already, created with another writer token."""
    key = RunKey(ref.entity, ref.project, ref.id)
    store.store.ingest(key, [(1, run_start(ref, writer_token=OTHER))], writer_token=OTHER)


def test_the_daemon_syncs_with_the_runs_writer_token_and_a_refusal_is_logged_once_and_never_retried(
    make_daemon: MakeDaemon, real_store: StoreServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[str, str]] = []

    def factory(target: str) -> CountingClient:
        client = CountingClient(target)
        client.calls = calls
        return client

    clock = FakeClock()
    daemon = make_daemon(clock=clock, store_client_factory=factory)
    target = real_store.grpc_address
    taken, good = make_ref("taken"), make_ref("good")
    taken_by_another_writer(real_store, taken)
    with (
        RunStreamClient(daemon.target, taken, str(tmp_path / "t"), pid=CLIENT_PID, server=target) as bad,
        RunStreamClient(daemon.target, good, str(tmp_path / "g"), pid=CLIENT_PID, server=target) as ok,
    ):
        bad.attach()
        ok.attach()
        bad.send([(1, run_start(taken, writer_token=TOKEN)), (2, history(0))])
        ok.send([(1, run_start(good, writer_token=TOKEN)), (2, history(0))])
        assert wait_until(
            lambda: "not syncing run me/proj/taken again until tracklogd restarts" in caplog.text
        )
        assert wait_until(lambda: (get_run(target, good) or store_pb2.RunView()).last_seq == 2)

        clock.advance(3600.0)  # far past the pause of any other refusal
        for seq in (3, 4):  # two more passes: the second begins after the first one ended
            bad.send([(seq, history(seq - 2))])
            ok.send([(seq, history(seq - 2))])
            assert wait_until(lambda s=seq: (get_run(target, good) or store_pb2.RunView()).last_seq == s)

    assert calls.count(("taken", TOKEN)) == 1  # refused once, never sent again
    assert ("good", TOKEN) in calls
    assert {token for _, token in calls} == {TOKEN}
    assert caplog.text.count("not syncing run me/proj/taken") == 1
    assert "PERMISSION_DENIED" in caplog.text
    view = get_run(target, taken)
    assert view is not None
    assert view.last_seq == 1  # the other writer's run, untouched
    assert [frame.seq for frame in spool_frames(spool_of(tmp_path / "t"))] == [1, 2, 3, 4]  # kept


def test_tracklog_sync_of_a_run_held_by_another_writer_exits_non_zero_with_the_reason(
    tmp_path: Path, real_store: StoreServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = make_ref("offline1")
    run_dir = tmp_path / "tracklog" / "offline-run-1"
    run_dir.mkdir(parents=True)
    writer = SpoolWriter(run_dir / "run-offline1.tlog")
    writer.append([(1, run_start(ref, writer_token=TOKEN)), (2, history(0)), (3, history(1))])
    writer.close()
    taken_by_another_writer(real_store, ref)

    code = cli_main(["sync", str(run_dir), "--server", real_store.grpc_address])

    err = capsys.readouterr().err
    assert code == 1
    assert "offline-run-1: sync failed:" in err
    assert "PERMISSION_DENIED" in err
    assert f"run {ref.entity}/{ref.project}/{ref.id} already exists, started by another process" in err
    assert "resume='allow'" in err
    assert read_synced(writer.path) == 0
    assert [frame.seq for frame in spool_frames(writer.path)] == [1, 2, 3]


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
