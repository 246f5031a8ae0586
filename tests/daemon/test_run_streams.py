"""The daemon in-process on a real unix socket: run streams, spools, sync, vanished clients, status."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import grpc
import pytest

from tests.daemon.helpers import CLIENT_PID, MakeDaemon
from tracklog import _home
from tracklog._spool import frames as spool_frames
from tracklog.v1 import daemon_pb2, daemon_pb2_grpc, records_pb2
from tracklogd.testing import (
    FakePids,
    FakeStoreServer,
    RunStreamClient,
    StaticLocalServer,
    finish,
    frames,
    history,
    make_ref,
    wait_until,
)

KEY = "me/proj/run1"


def spool_seqs(run_dir: Path, run_id: str = "run1") -> list[int]:
    return [frame.seq for frame in spool_frames(run_dir / f"run-{run_id}.tlog")]


def spool_records(run_dir: Path, run_id: str = "run1") -> list[records_pb2.Record]:
    return [records_pb2.Record.FromString(f.payload) for f in spool_frames(run_dir / f"run-{run_id}.tlog")]


def client_for(target: str, run_dir: Path, run_id: str = "run1", **kwargs: object) -> RunStreamClient:
    return RunStreamClient(target, make_ref(run_id), str(run_dir), pid=CLIENT_PID, **kwargs)  # type: ignore[arg-type]


def test_attach_answers_at_once_with_durable_seq_zero_and_the_run_url(
    make_daemon: MakeDaemon, run_dir: Path, home: Path
) -> None:
    daemon = make_daemon()

    with client_for(daemon.target, run_dir) as client:
        attached = client.attach()

    assert attached.durable_seq == 0
    assert attached.url == "http://store.test/me/proj/runs/run1"
    assert (run_dir / "run-run1.tlog").exists()
    entry = json.loads((home / "pending" / "me+proj+run1.json").read_text())
    assert entry["ref"] == KEY
    assert entry["spool"] == str(run_dir / "run-run1.tlog")
    assert entry["pid"] == CLIENT_PID


def test_the_socket_is_private_and_daemon_json_names_the_daemon(make_daemon: MakeDaemon, home: Path) -> None:
    daemon = make_daemon()

    assert stat.S_IMODE(os.stat(_home.socket_path(home)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    info = json.loads((home / "daemon.json").read_text())
    assert info["pid"] == os.getpid()
    assert info["target"] == daemon.target
    assert info["version"] == "0.1.0"
    assert info["started_at"] > 0


def test_frames_are_acked_after_they_are_in_the_spool_and_reach_the_store(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    daemon = make_daemon()
    batch = frames(make_ref(), 9)

    with client_for(daemon.target, run_dir) as client:
        client.attach()
        assert client.send(batch[:4]) == 4
        assert spool_seqs(run_dir) == [1, 2, 3, 4]
        assert client.send(batch[4:]) == 10
        assert spool_seqs(run_dir) == list(range(1, 11))
        assert store.store.wait_for_seq(KEY, 10, timeout=5)

    assert store.store.seqs(KEY) == list(range(1, 11))


def test_a_batch_that_does_not_ask_has_its_ack_held_until_a_batch_that_asks(
    make_daemon: MakeDaemon, run_dir: Path
) -> None:
    daemon = make_daemon(ack_interval=3600.0)  # no ack goes out because of time in this test
    batch = frames(make_ref(), 6)

    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send_nowait(batch[:2], ack=False)  # the stream's first batch: acked, nothing held yet
        client.send_nowait(batch[2:5], ack=False)  # held
        client.send_nowait((), ack=True)  # asks for the durable seq of what came before
        client.send_nowait(batch[5:], ack=True)
        acks = [client.next_reply() for _ in range(3)]

    assert [(reply.WhichOneof("kind"), reply.ack.durable_seq) for reply in acks if reply] == [
        ("ack", 2),
        ("ack", 5),
        ("ack", 7),
    ]
    assert spool_seqs(run_dir) == list(range(1, 8))


def test_a_finish_is_acked_at_once_even_when_its_batch_does_not_ask(
    make_daemon: MakeDaemon, run_dir: Path
) -> None:
    daemon = make_daemon(ack_interval=3600.0)
    batch = frames(make_ref(), 3, finished=True)

    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send_nowait(batch[:2], ack=False)
        client.send_nowait(batch[2:4], ack=False)  # history (seqs 3-4): held
        client.send_nowait(batch[4:], ack=False)  # the Finish
        acks = [client.next_reply() for _ in range(2)]

    assert [reply.ack.durable_seq for reply in acks if reply] == [2, 5]  # seq 5 is the Finish


def test_a_reattaching_client_learns_the_durable_seq_and_its_resent_frames_are_skipped(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    daemon = make_daemon()
    batch = frames(make_ref(), 8)
    with client_for(daemon.target, run_dir) as first:
        first.attach()
        first.send(batch[:6])

    with client_for(daemon.target, run_dir) as second:
        assert second.attach().durable_seq == 6
        assert second.send(batch[3:]) == 9  # 4..6 again, then 7..9

    assert spool_seqs(run_dir) == list(range(1, 10))
    assert store.store.wait_for_seq(KEY, 9)
    assert store.store.seqs(KEY) == list(range(1, 10))


def test_a_frame_gap_aborts_the_stream_with_failed_precondition(
    make_daemon: MakeDaemon, run_dir: Path
) -> None:
    daemon = make_daemon()
    batch = frames(make_ref(), 5)

    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send(batch[:2])
        client.send_nowait(batch[3:])  # frame 3 is missing
        error = client.wait_ended()

    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "expected frame 3, got 4" in (error.details() or "")
    assert spool_seqs(run_dir) == [1, 2]


def test_frames_before_an_attach_abort_the_stream(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = make_daemon()
    with grpc.insecure_channel(daemon.target) as channel:
        batch = daemon_pb2.FrameBatch(frames=[records_pb2.Frame(seq=1, record=history(0))])
        replies = daemon_pb2_grpc.DaemonStub(channel).RunStream(
            iter([daemon_pb2.ClientMessage(frames=batch)])
        )
        with pytest.raises(grpc.RpcError) as raised:
            list(replies)

    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "expected Attach" in raised.value.details()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("ref", "run_dir", "message"),
    [
        (records_pb2.RunRef(entity="me", project="p q", id="r"), "/abs", "invalid run project"),
        (records_pb2.RunRef(entity="me", project="p", id=""), "/abs", "invalid run id"),
        (records_pb2.RunRef(entity="me", project="p", id="r"), "relative/dir", "absolute"),
    ],
)
def test_a_bad_attach_is_refused_with_invalid_argument(
    make_daemon: MakeDaemon, ref: records_pb2.RunRef, run_dir: str, message: str
) -> None:
    daemon = make_daemon()
    with grpc.insecure_channel(daemon.target) as channel:
        attach = daemon_pb2.ClientMessage(attach=daemon_pb2.Attach(ref=ref, run_dir=run_dir, pid=1))
        with pytest.raises(grpc.RpcError) as raised:
            list(daemon_pb2_grpc.DaemonStub(channel).RunStream(iter([attach])))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert message in raised.value.details()  # type: ignore[attr-defined]


def test_a_second_attach_of_a_run_replaces_the_first_stream(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    daemon = make_daemon()
    batch = frames(make_ref(), 6)
    with client_for(daemon.target, run_dir) as first, client_for(daemon.target, run_dir) as second:
        first.attach()
        first.send(batch[:3])

        assert second.attach().durable_seq == 3
        error = first.wait_ended()
        assert isinstance(error, grpc.Call)
        assert error.code() == grpc.StatusCode.ABORTED
        assert second.send(batch[3:]) == 7

    assert spool_seqs(run_dir) == list(range(1, 8))


def test_several_runs_stream_at_once_each_to_its_own_spool(
    make_daemon: MakeDaemon, tmp_path: Path, store: FakeStoreServer
) -> None:
    daemon = make_daemon()
    clients = [client_for(daemon.target, tmp_path / f"r{i}", run_id=f"r{i}") for i in range(4)]
    try:
        for client in clients:
            client.attach()
        for i, client in enumerate(clients):
            assert client.send(frames(make_ref(f"r{i}"), 3 + i, finished=True)) == 5 + i
    finally:
        for client in clients:
            client.close()

    for i in range(4):
        assert store.store.wait_for_seq(f"me/proj/r{i}", 5 + i)
        assert spool_seqs(tmp_path / f"r{i}", f"r{i}") == list(range(1, 6 + i))


def test_a_finished_and_synced_run_is_let_go(make_daemon: MakeDaemon, run_dir: Path, home: Path) -> None:
    daemon = make_daemon()

    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send(frames(make_ref(), 3, finished=True))
        client.close()

    assert wait_until(lambda: not daemon.status().runs)
    assert not list((home / "pending").iterdir())
    assert (run_dir / "run-run1.synced").read_text().strip() == "5"


def test_a_client_that_vanished_gets_a_crashed_finish_at_once(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, pids: FakePids
) -> None:
    daemon = make_daemon()
    client = client_for(daemon.target, run_dir)
    client.attach()
    client.send(frames(make_ref(), 3))

    pids.alive.clear()  # the training process is gone ...
    client.cancel()  # ... and its stream breaks

    assert store.store.wait_for_seq(KEY, 5)
    last = store.store.records(KEY)[-1]
    assert last.WhichOneof("kind") == "finish"
    assert last.finish.state == records_pb2.RUN_STATE_CRASHED
    assert last.finish.exit_code == -1
    assert last.finish.reason == f"training process {CLIENT_PID} vanished"
    assert spool_seqs(run_dir) == [1, 2, 3, 4, 5]


def test_a_detached_client_that_dies_later_is_finished_as_crashed(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, pids: FakePids
) -> None:
    daemon = make_daemon()
    client = client_for(daemon.target, run_dir)
    client.attach()
    client.send(frames(make_ref(), 2))
    client.cancel()
    assert wait_until(lambda: not daemon.status().runs[0].attached)
    assert store.store.wait_for_seq(KEY, 3)
    assert spool_seqs(run_dir) == [1, 2, 3]  # still alive: nothing is added

    pids.alive.clear()

    assert store.store.wait_for_seq(KEY, 4, timeout=3)
    assert spool_records(run_dir)[-1].finish.state == records_pb2.RUN_STATE_CRASHED


def test_a_client_that_reattaches_is_not_finished_as_crashed(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, pids: FakePids
) -> None:
    daemon = make_daemon()
    batch = frames(make_ref(), 4, finished=True)
    first = client_for(daemon.target, run_dir)
    first.attach()
    first.send(batch[:3])
    first.cancel()

    with client_for(daemon.target, run_dir) as second:
        assert second.attach().durable_seq == 3
        pids.alive.clear()  # the first stream's process "dies"; the run is attached again, so no crash
        assert second.send(batch[3:]) == 6
        second.close()

    assert store.store.wait_for_seq(KEY, 6)
    assert [r.WhichOneof("kind") for r in store.store.records(KEY)].count("finish") == 1
    assert store.store.records(KEY)[-1].finish.state == records_pb2.RUN_STATE_FINISHED


def test_a_run_that_finished_gets_no_crashed_finish_when_its_process_exits(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, pids: FakePids
) -> None:
    daemon = make_daemon()
    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send(frames(make_ref(), 2, finished=True))
        pids.alive.clear()
        client.cancel()

    assert wait_until(lambda: not daemon.status().runs)
    assert spool_seqs(run_dir) == [1, 2, 3, 4]
    assert store.store.seqs(KEY) == [1, 2, 3, 4]


def test_a_refused_run_is_parked_and_does_not_hold_up_other_runs(
    make_daemon: MakeDaemon, tmp_path: Path, store: FakeStoreServer, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = make_daemon()
    store.store.reject.add("me/proj/bad")
    with (
        client_for(daemon.target, tmp_path / "bad", run_id="bad") as bad,
        client_for(daemon.target, tmp_path / "good", run_id="good") as good,
    ):
        bad.attach()
        good.attach()
        bad.send(frames(make_ref("bad"), 2))
        good.send(frames(make_ref("good"), 2))
        assert store.store.wait_for_seq("me/proj/good", 3)
        # One pass pushes both runs, in either order: wait for the refusal too.
        assert wait_until(lambda: len([r for r in store.store.requests if r.ref.id == "bad"]) >= 3)
        refused = len([r for r in store.store.requests if r.ref.id == "bad"])
        bad.send([(4, history(2))])
        good.send([(4, history(2))])
        assert store.store.wait_for_seq("me/proj/good", 4)

    assert store.store.seqs("me/proj/bad") == []
    assert refused == 3
    # The batch, its first frame alone, that frame as an empty record; then parked, not retried in a loop.
    assert len([r for r in store.store.requests if r.ref.id == "bad"]) == 3
    assert "not syncing run me/proj/bad" in caplog.text
    assert "INVALID_ARGUMENT" in caplog.text


def test_frames_wait_in_the_spool_while_the_store_is_down_and_arrive_when_it_is_back(
    make_daemon: MakeDaemon, run_dir: Path
) -> None:
    remote = FakeStoreServer().start()
    daemon = make_daemon()
    batch = frames(make_ref(), 10, finished=True)
    try:
        with client_for(daemon.target, run_dir, server=remote.target) as client:
            client.attach()
            client.send(batch[:3])
            assert wait_until(lambda: daemon.status().runs[0].synced_seq == 3)
            remote.stop()

            assert client.send(batch[3:]) == 12  # acked while the store is down

            assert daemon.status().runs[0].synced_seq == 3
            remote.start()  # the same store, back on the same port
            assert remote.store.wait_for_seq(KEY, 12, timeout=15)
            client.close()
        assert remote.store.seqs(KEY) == list(range(1, 13))
    finally:
        remote.stop()


def test_a_run_without_a_server_syncs_once_the_local_server_answers(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    local = StaticLocalServer(None)
    daemon = make_daemon(local_server=local)

    with client_for(daemon.target, run_dir) as client:
        attached = client.attach()
        client.send(frames(make_ref(), 3))
        assert daemon.status().local_server == ""
        local.set_target(store.target)

        assert store.store.wait_for_seq(KEY, 4)
        assert daemon.status().local_server == store.target
        assert client.attach_message.server == ""

    assert attached.url == ""  # the local server's address was not known yet


def test_heartbeats_name_the_attached_started_runs_and_forward_a_stop(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    daemon = make_daemon(heartbeat_interval=0.05)
    store.store.stop_runs.add(KEY)

    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send(frames(make_ref(), 1))
        assert store.store.wait_for(lambda: [KEY] in store.store.heartbeats)
        reply = client.next_reply()

    assert reply is not None
    assert reply.WhichOneof("kind") == "stop"
    assert reply.stop.reason


def test_a_stop_in_an_ingest_answer_reaches_the_client_without_waiting_for_a_heartbeat(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    daemon = make_daemon(heartbeat_interval=3600.0)  # no heartbeat during the test
    store.store.stop_on_ingest.add(KEY)

    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send(frames(make_ref(), 2))
        assert store.store.wait_for_seq(KEY, 2)
        reply = client.next_reply()
        while reply is not None and reply.WhichOneof("kind") != "stop":
            reply = client.next_reply()

    assert reply is not None
    assert "a stop was requested through the tracklog API" in reply.stop.reason
    assert store.store.heartbeats == []


def test_status_lists_each_run_with_its_durable_and_synced_seqs(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    daemon = make_daemon()
    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send(frames(make_ref(), 4))
        assert store.store.wait_for_seq(KEY, 5)
        assert wait_until(lambda: daemon.status().runs[0].synced_seq == 5)
        with grpc.insecure_channel(daemon.target) as channel:
            response = daemon_pb2_grpc.DaemonStub(channel).Status(daemon_pb2.StatusRequest())

    assert response.pid == os.getpid()
    assert response.version == "0.1.0"
    assert response.local_server == store.target
    (run,) = response.runs
    assert (run.ref.id, run.attached, run.durable_seq, run.synced_seq) == ("run1", True, 5, 5)
    assert run.run_dir == str(run_dir)
    assert run.server == store.target


def test_the_shutdown_rpc_stops_the_daemon_and_makes_the_spools_durable(
    make_daemon: MakeDaemon, run_dir: Path, home: Path
) -> None:
    daemon = make_daemon()
    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send(frames(make_ref(), 2))
        with grpc.insecure_channel(daemon.target) as channel:
            daemon_pb2_grpc.DaemonStub(channel).Shutdown(daemon_pb2.ShutdownRequest())
        assert daemon.wait(5)
        daemon.close()
        assert client.wait_ended() is not None

    assert not _home.socket_path(home).exists()
    assert not (home / "daemon.json").exists()
    assert (home / "pending" / "me+proj+run1.json").exists()  # not finished: the next daemon resumes it


def test_an_idle_daemon_stops_itself_but_not_while_a_run_is_attached(
    make_daemon: MakeDaemon, run_dir: Path
) -> None:
    daemon = make_daemon(idle_timeout=0.2, fsync_interval=0.05)  # the idle check runs as often
    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send(frames(make_ref(), 1, finished=True))
        assert not daemon.wait(1.0)  # attached for five times the idle timeout
        client.close()

    assert daemon.wait(5)


def test_a_new_daemon_recovers_a_torn_spool_and_finishes_a_run_whose_process_is_gone(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, pids: FakePids, home: Path
) -> None:
    first = make_daemon()
    client = client_for(first.target, run_dir)
    client.attach()
    client.send(frames(make_ref(), 3))
    first.close()
    client.cancel()
    spool = run_dir / "run-run1.tlog"
    good = spool.stat().st_size
    with open(spool, "ab") as f:  # half of a frame, as a crash mid-write leaves it
        f.write(b"\x40\x00\x00\x00\x01\x02\x03\x04\x05\x00\x00\x00\x00\x00\x00\x00partial")
    pids.alive.clear()

    make_daemon()

    records = spool_records(run_dir)
    # The torn frame's process is gone (it cannot send it again): its loss is recorded in its place.
    kinds = ["start", "history", "history", "history", "lost", "finish"]
    assert [r.WhichOneof("kind") for r in records] == kinds
    assert records[-1].finish.state == records_pb2.RUN_STATE_CRASHED
    assert spool.stat().st_size > good  # the torn tail was cut, then the loss and the Finish appended
    assert store.store.wait_for_seq(KEY, 6)
    assert wait_until(lambda: not (home / "pending" / "me+proj+run1.json").exists())


def test_a_finish_that_arrives_late_after_a_detach_is_still_accepted(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer
) -> None:
    daemon = make_daemon()
    with client_for(daemon.target, run_dir) as client:
        client.attach()
        client.send(frames(make_ref(), 2))
    with client_for(daemon.target, run_dir) as client:
        assert client.attach().durable_seq == 3
        assert client.send([(4, finish())]) == 4
        client.close()

    assert store.store.wait_for_seq(KEY, 4)
    assert wait_until(lambda: not daemon.status().runs)


def test_a_client_that_vanishes_before_its_run_start_leaves_nothing_behind(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, pids: FakePids, home: Path
) -> None:
    daemon = make_daemon()
    client = client_for(daemon.target, run_dir)
    client.attach()

    pids.alive.clear()
    client.cancel()

    assert wait_until(lambda: not daemon.status().runs)
    assert spool_seqs(run_dir) == []  # no crashed Finish for a run the store never heard of
    assert not list((home / "pending").iterdir())
    assert store.store.requests == []


def test_a_run_that_goes_on_after_a_finish_is_watched_again(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, pids: FakePids
) -> None:
    daemon = make_daemon()
    client = client_for(daemon.target, run_dir)
    client.attach()
    client.send(frames(make_ref(), 1, finished=True))
    client.send([(4, history(1))])  # resumed after its first Finish

    pids.alive.clear()
    client.cancel()

    assert store.store.wait_for_seq(KEY, 5)
    kinds = [r.WhichOneof("kind") for r in store.store.records(KEY)]
    assert kinds == ["start", "history", "finish", "history", "finish"]
    assert store.store.records(KEY)[-1].finish.state == records_pb2.RUN_STATE_CRASHED
    assert wait_until(lambda: not daemon.status().runs)


def test_a_socket_directory_that_another_user_could_write_is_refused(tmp_path: Path) -> None:
    home = tmp_path / ("h" * 120)  # too long for a socket name: the socket goes under the temp dir
    short = _home.socket_path(home).parent
    try:
        short.chmod(0o777)  # as if someone else had made it first
        with pytest.raises(PermissionError, match="not a private directory"):
            _home.socket_path(home)
    finally:
        short.rmdir()


def test_a_second_live_process_attaching_to_a_run_is_refused_and_the_first_keeps_writing(
    make_daemon: MakeDaemon, run_dir: Path, store: FakeStoreServer, pids: FakePids
) -> None:
    daemon = make_daemon()
    batch = frames(make_ref(), 6)
    other_pid = CLIENT_PID + 1
    pids.alive.add(other_pid)  # a second training process with the same run id, alive
    other = RunStreamClient(daemon.target, make_ref(), str(run_dir), pid=other_pid)
    with client_for(daemon.target, run_dir) as first, other:
        first.attach()
        first.send(batch[:3])

        with pytest.raises(AssertionError, match="expected Attached"):
            other.attach()
        error = other.wait_ended()
        assert isinstance(error, grpc.Call)
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert f"is being written by process {CLIENT_PID}, which is still running" in str(error.details())
        assert first.send(batch[3:]) == 7  # the first one was not disturbed

    assert spool_seqs(run_dir) == list(range(1, 8))
