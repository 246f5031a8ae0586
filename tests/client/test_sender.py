"""The sender streams frames to the daemon, keeps them until acked, and resends after a broken stream."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracklog import _home
from tracklog._sender import Sender
from tracklog._transport import DaemonTransport
from tracklog.testing import FakeDaemon, history_rows
from tracklog.v1 import daemon_pb2, records_pb2

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
