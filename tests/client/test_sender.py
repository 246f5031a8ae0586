"""The sender streams frames to the daemon, keeps them until acked, and resends after a broken stream."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracklog import _home
from tracklog._sender import MAX_UNACKED_FRAMES, Sender
from tracklog._transport import DaemonTransport
from tracklog.testing import FakeDaemon, history_rows
from tracklog.v1 import daemon_pb2, records_pb2
from tracklogd.testing import wait_until

PATH = "e/p/r1"


@pytest.fixture
def daemon(tmp_path: Path) -> FakeDaemon:
    fake = FakeDaemon().serve(tmp_path / "home")
    yield fake  # type: ignore[misc]
    fake.stop()


def _sender(home: Path) -> tuple[Sender, list[str]]:
    ref = records_pb2.RunRef(entity="e", project="p", id="r1")
    attach = daemon_pb2.Attach(ref=ref, run_dir="/nonexistent", pid=os.getpid())
    transport = DaemonTransport(home, attach, start_timeout=1.0, spawn=False)
    warnings: list[str] = []
    sender = Sender(transport, warn=warnings.append, flush_interval=0.01, finish_timeout=10.0)
    return sender, warnings


def _rows(sender: Sender, start: int, count: int) -> None:
    for i in range(start, start + count):
        sender.queue.append((i, 1.0e9 + i, {"x": float(i)}))


def test_frames_reach_the_daemon_in_order_and_the_sender_keeps_nothing_after_acks(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    sender, warnings = _sender(tmp_path / "home")
    assert sender.connect_now(timeout=5)
    sender.start()
    _rows(sender, 0, 10_000)
    assert sender.close(timeout=30)
    rows = history_rows(daemon.records(PATH))
    assert [r["_step"] for r in rows] == list(range(10_000))
    assert sender.pending_frames == 0
    assert warnings == []


def test_a_dropped_stream_is_reopened_and_every_frame_arrives_exactly_once(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    sender, _ = _sender(tmp_path / "home")
    assert sender.connect_now(timeout=5)
    sender.start()
    daemon.drop_after = 3
    for chunk in range(20):
        _rows(sender, chunk * 500, 500)
        sender.queue.append(
            records_pb2.Record(summary=records_pb2.SummaryUpdate(items_json=f'{{"c": {chunk}}}'))
        )
        sender.wake.set()
    assert sender.close(timeout=30)
    records = daemon.records(PATH)
    assert [seq for seq, _ in records] == list(range(1, len(records) + 1))
    assert [r["_step"] for r in history_rows(records)] == list(range(10_000))
    assert daemon.attaches >= 2


def test_frames_the_daemon_never_acked_go_to_the_spool_when_it_is_gone_at_finish(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _home.ensure_home(home)
    ref = records_pb2.RunRef(entity="e", project="p", id="r1")
    attach = daemon_pb2.Attach(ref=ref, run_dir=str(tmp_path), pid=os.getpid())
    transport = DaemonTransport(home, attach, start_timeout=0.1, spawn=False)
    written: list[tuple[int, bytes]] = []
    warnings: list[str] = []
    sender = Sender(
        transport, warn=warnings.append, flush_interval=0.01, fallback=written.extend, finish_timeout=0.5
    )
    assert not sender.connect_now(timeout=5)
    sender.start()
    _rows(sender, 0, 100)
    assert sender.close(timeout=30)
    assert [seq for seq, _ in written] == [1]
    assert len(history_rows((s, records_pb2.Record.FromString(p)) for s, p in written)) == 100
    assert any("written to the run's spool" in w for w in warnings)


def test_batches_in_the_run_leave_their_ack_to_the_daemon_and_connect_and_finish_ask_for_theirs(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    sender, warnings = _sender(tmp_path / "home")
    sender.queue.append(records_pb2.Record(config=records_pb2.ConfigUpdate(items_json="{}")))
    assert sender.connect_now(timeout=5)  # returns once that record is acked: so it asked
    sender.start()
    for start in range(0, 50, 10):  # a few cycles of the 10 ms flush interval
        _rows(sender, start, 10)
        assert wait_until(lambda: not sender.queue)
    assert sender.close(timeout=30)  # the fake acks only what is asked for: finish asked
    assert sender.pending_frames == 0
    assert [r["_step"] for r in history_rows(daemon.records(PATH))] == list(range(50))
    asked = [ack for _, ack in daemon.batches]
    assert daemon.batches[0] == (1, True)
    assert asked[-1]  # the last batch, the one finish waits for, asked for its ack
    assert not all(asked[1:-1])  # the batches in between left it to the daemon
    assert warnings == []


def test_a_sender_holding_many_unacked_frames_asks_for_an_ack(daemon: FakeDaemon, tmp_path: Path) -> None:
    sender, warnings = _sender(tmp_path / "home")
    assert sender.connect_now(timeout=5)
    count = MAX_UNACKED_FRAMES + 5
    for i in range(count):  # one frame per cycle, driven here instead of by the thread
        sender.queue.append(records_pb2.Record(config=records_pb2.ConfigUpdate(items_json=f'{{"i": {i}}}')))
        sender._cycle()
    assert wait_until(lambda: len(daemon.batches) >= count)
    first_ask = next(i for i, (_, ack) in enumerate(daemon.batches) if ack)
    assert first_ask == MAX_UNACKED_FRAMES - 1  # the batch that made it hold that many frames
    assert wait_until(lambda: sender.transport.durable_seq() >= MAX_UNACKED_FRAMES)
    assert warnings == []
