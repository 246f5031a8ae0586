"""The sender survives bad records, a daemon that cannot write, and a stalled daemon, and never puts
a record after the run's Finish."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracklog._capture import END, TIMING_INTERVAL, Capture
from tracklog._errors import UsageError
from tracklog._sender import Sender
from tracklog._settings import max_buffer_bytes
from tracklog._transport import DaemonTransport, SpoolTransport
from tracklog.testing import FakeClock, FakeDaemon, history_rows, read_records
from tracklog.v1 import daemon_pb2, records_pb2
from tracklogd.testing import wait_until

PATH = "e/p/r1"
DISK_FULL = "cannot write run-r1.tlog: [Errno 28] No space left on device"


@pytest.fixture
def daemon(tmp_path: Path) -> FakeDaemon:
    fake = FakeDaemon().serve(tmp_path / "home")
    yield fake  # type: ignore[misc]
    fake.stop()


def _sender(home: Path, **options: Any) -> tuple[Sender, list[str]]:
    ref = records_pb2.RunRef(entity="e", project="p", id="r1")
    attach = daemon_pb2.Attach(ref=ref, run_dir="/nonexistent", pid=os.getpid())
    transport = DaemonTransport(home, attach, start_timeout=1.0, spawn=False)
    warnings: list[str] = []
    options = {"flush_interval": 0.01, "finish_timeout": 10.0, **options}
    return Sender(transport, warn=warnings.append, **options), warnings


def _row(step: int) -> tuple[int, float, dict[str, Any]]:
    return (step, 1.0e9 + step, {"x": float(step)})


def _finish() -> records_pb2.Record:
    return records_pb2.Record(finish=records_pb2.Finish(state=records_pb2.RUN_STATE_FINISHED))


def _kinds(records: list[tuple[int, records_pb2.Record]]) -> list[str]:
    return [record.WhichOneof("kind") or "" for _, record in records]


def _dropped(records: list[tuple[int, records_pb2.Record]]) -> list[records_pb2.RecordsDropped]:
    return [record.dropped for _, record in records if record.WhichOneof("kind") == "dropped"]


# -- bad records ------------------------------------------------------------------------------------


def test_rows_that_cannot_be_encoded_cost_only_themselves_and_logging_goes_on(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    sender, warnings = _sender(tmp_path / "home")
    assert sender.connect_now(timeout=5)
    sender.start()
    bad_steps = {1_000, 2_500}
    for step in range(5_000):
        if step == 1_000:
            sender.queue.append((step, 1.0e9, {"lone \ud800 surrogate": 1.0}))
        elif step == 2_500:
            sender.queue.append((2**63, 1.0e9, {"x": 1.0}))  # beyond int64
        else:
            sender.queue.append(_row(step))
        if step % 1_000 == 999:
            sender.wake.set()
            assert wait_until(lambda: not sender.queue)
    assert sender.close(timeout=30, closing=[_finish()])  # finish() does not raise
    records = daemon.records(PATH)
    steps = [row["_step"] for row in history_rows(records)]
    assert steps == [s for s in range(5_000) if s not in bad_steps]
    assert sum(d.rows for d in _dropped(records)) == 2 == sender.losses.rows
    assert _kinds(records)[-1] == "finish"
    encode_warnings = [w for w in warnings if "could not be encoded" in w]
    assert len(encode_warnings) == 1, warnings  # told once, counted after
    assert any("2 history rows" in w for w in warnings)


# Keys starting with "_" are the row's own (_step, _timestamp): log() refuses them at the call.
_keys = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from("\ud800\udbff\udc00")), max_size=5
).filter(lambda key: not key.startswith("_"))
_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(alphabet=st.one_of(st.characters(), st.just("\udfff")), max_size=5),
)


def _encodes_alone(row: tuple[int, float, dict[str, Any]]) -> bool:
    from tracklog._history import BatchBuilder

    builder = BatchBuilder()
    builder.add(*row)
    try:
        records_pb2.Record(history=builder.encode()).SerializeToString()
    except Exception:
        return False
    return True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=2**64), st.dictionaries(_keys, _values, max_size=3)),
        max_size=30,
        unique_by=lambda item: item[0],
    )
)
def test_whatever_rows_reach_the_sender_the_encodable_ones_are_kept_and_the_rest_counted(
    items: list[tuple[int, dict[str, Any]]],
) -> None:
    rows = [(step, 1.0e9, data) for step, data in sorted(items, key=lambda item: item[0])]
    good = [row for row in rows if _encodes_alone(row)]
    with tempfile.TemporaryDirectory() as tmp:
        warnings: list[str] = []
        sender = Sender(SpoolTransport(Path(tmp) / "run-r1.tlog"), warn=warnings.append)
        sender.queue.extend(rows)
        assert sender.close(timeout=10, closing=[_finish()])
        records = read_records(tmp)
    kept = history_rows(records)
    assert [row["_step"] for row in kept] == [step for step, _, _ in good]
    for row, (_, _, data) in zip(kept, good, strict=True):
        assert {k: v for k, v in row.items() if not k.startswith("_")}.keys() == data.keys()
        for key, value in data.items():
            assert row[key] == value or (isinstance(value, float) and math.isnan(value))
    assert sender.losses.rows == len(rows) - len(good)
    assert sum(d.rows for d in _dropped(records)) == len(rows) - len(good)
    assert _kinds(records)[-1] == "finish"


# -- nothing after the Finish -----------------------------------------------------------------------


def test_a_finish_on_the_timing_tick_is_still_the_last_frame_the_daemon_gets(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    clock = FakeClock()
    capture = Capture(None, warn=print, start_wall=clock(), clock=clock, wall=clock)
    sender, warnings = _sender(tmp_path / "home", capture=capture, clock=clock)
    assert sender.connect_now(timeout=5)
    sender.queue.extend(_row(step) for step in range(10))
    # finish() has queued the run's end while the sender thread is about to run its cycle ...
    sender.queue.append(END)
    sender.queue.append(_finish())
    clock.advance(TIMING_INTERVAL)  # ... exactly on the 30 s timing tick
    sender._cycle()  # one batch to the daemon
    assert wait_until(lambda: "finish" in _kinds(daemon.records(PATH)))
    kinds = _kinds(daemon.records(PATH))
    assert kinds[-1] == "finish", kinds
    assert kinds.count("timing") == 1  # the end's own timing, before the Finish
    sender.queue.append(records_pb2.Record(summary=records_pb2.SummaryUpdate(items_json="{}")))  # later still
    assert sender.close(timeout=10)
    assert _kinds(daemon.records(PATH)) == kinds
    assert warnings == []


def test_closing_records_go_behind_everything_the_thread_queued_at_the_tick(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    clock = FakeClock()
    capture = Capture(None, warn=print, start_wall=clock(), clock=clock, wall=clock)
    sender, _ = _sender(tmp_path / "home", capture=capture)
    assert sender.connect_now(timeout=5)
    sender.start()
    sender.queue.extend(_row(step) for step in range(100))
    clock.advance(TIMING_INTERVAL)
    assert sender.close(timeout=10, closing=[END, _finish()])
    kinds = _kinds(daemon.records(PATH))
    assert kinds[-2:] == ["timing", "finish"]
    assert [row["_step"] for row in history_rows(daemon.records(PATH))] == list(range(100))


# -- a daemon that cannot write ---------------------------------------------------------------------


def _sender_of_a_daemon_that_cannot_write(daemon: FakeDaemon, home: Path) -> tuple[Sender, list[str]]:
    """A started sender whose daemon answers every write with "No space left on device"."""
    sender, warnings = _sender(home)
    assert sender.connect_now(timeout=5)
    sender.start()
    daemon.write_error = DISK_FULL
    return sender, warnings


def _said(warnings: list[str], text: str) -> int:
    return len([w for w in warnings if text in w])


def test_a_daemon_that_cannot_write_is_told_once_and_gets_everything_again_when_it_can(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    sender, warnings = _sender_of_a_daemon_that_cannot_write(daemon, tmp_path / "home")
    for step in range(0, 3_000, 100):
        sender.queue.extend(_row(s) for s in range(step, step + 100))
        assert wait_until(lambda: not sender.queue)
    # It answered every batch with the error; the sender keeps resending, after a backoff.
    assert wait_until(lambda: len(daemon.batches) >= 3 and sender.pending_frames >= 30, timeout=10)
    assert daemon.records(PATH)[1:] == []
    failing = [w for w in warnings if "cannot write" in w]
    assert len(failing) == 1, warnings
    assert "No space left on device" in failing[0]
    daemon.write_error = ""
    assert wait_until(lambda: sender.pending_frames == 0, timeout=15)
    assert _said(warnings, "writes this run's data again") == 1, warnings
    sender.queue.extend(_row(s) for s in range(3_000, 3_100))
    assert sender.close(timeout=30, closing=[_finish()])
    records = daemon.records(PATH)
    assert [seq for seq, _ in records] == list(range(1, len(records) + 1))
    assert [row["_step"] for row in history_rows(records)] == list(range(3_100))
    assert _said(warnings, "cannot write") == 1


def test_a_daemon_that_writes_again_only_while_the_run_finishes_is_still_reported_as_writing_again(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    sender, warnings = _sender_of_a_daemon_that_cannot_write(daemon, tmp_path / "home")
    sender.queue.extend(_row(s) for s in range(500))
    assert wait_until(lambda: any("cannot write" in w for w in warnings), timeout=10)
    daemon.write_error = ""  # the disk has room again just as the run ends: the last wait sees it
    assert sender.close(timeout=30, closing=[_finish()])
    assert [row["_step"] for row in history_rows(daemon.records(PATH))] == list(range(500))
    assert _said(warnings, "cannot write") == 1, warnings
    assert _said(warnings, "writes this run's data again") == 1, warnings


# -- the memory cap ---------------------------------------------------------------------------------


def test_a_stalled_daemon_costs_rows_beyond_the_memory_cap_counted_exactly_and_the_rest_arrives(
    daemon: FakeDaemon, tmp_path: Path
) -> None:
    cap = 2 * 2**20
    sender, warnings = _sender(tmp_path / "home", max_buffer_bytes=cap)
    assert sender.connect_now(timeout=5)
    sender.start()
    daemon.reading.clear()  # stalled: it takes nothing off the stream
    step = 0
    highest = 0
    while sender.losses.rows < 20_000:
        sender.queue.extend(_row(s) for s in range(step, step + 4_096))
        step += 4_096
        sender.wake.set()
        assert wait_until(lambda: not sender.queue)
        highest = max(highest, sender.buffered_bytes)
        assert step < 2_000_000, "the sender never dropped anything"
    assert highest <= cap
    dropping = [w for w in warnings if "dropped" in w]
    assert len(dropping) == 1, warnings
    assert "TRACKLOG_MAX_BUFFER_MB" in dropping[0]
    daemon.reading.set()
    assert wait_until(lambda: sender.pending_frames == 0, timeout=30)
    sender.queue.extend(_row(s) for s in range(step, step + 100))
    step += 100
    assert sender.close(timeout=30, closing=[_finish()])
    records = daemon.records(PATH)
    steps = [row["_step"] for row in history_rows(records)]
    assert len(steps) + sender.losses.rows == step
    assert steps[-100:] == list(range(step - 100, step))  # rows logged after it caught up all arrive
    assert steps == sorted(steps)
    assert steps[0] == 0
    assert sum(d.rows for d in _dropped(records)) == sender.losses.rows
    assert any(f"{sender.losses.rows} history rows" in w for w in warnings)


def test_the_memory_cap_is_set_in_mib_by_its_environment_variable_and_a_bad_value_is_named() -> None:
    assert max_buffer_bytes({}, 7) == 7
    assert max_buffer_bytes({"TRACKLOG_MAX_BUFFER_MB": " 64 "}, 7) == 64 * 2**20
    assert max_buffer_bytes({"TRACKLOG_MAX_BUFFER_MB": "1.5"}, 7) == 3 * 2**19
    for bad in ("0", "-1", "lots", "nan", "inf"):
        with pytest.raises(UsageError, match=rf"TRACKLOG_MAX_BUFFER_MB .* got '{bad}'"):
            max_buffer_bytes({"TRACKLOG_MAX_BUFFER_MB": bad}, 7)
