"""Small parts of the daemon, each on its own: configuration, records, pending entries, logging."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import pytest

from tracklog.v1 import records_pb2
from tracklogd import DaemonConfig
from tracklogd._local_server import choose_http_port, server_command
from tracklogd._pending import PendingDir, PendingEntry
from tracklogd._ratelimit import RateLimitedLog
from tracklogd._records import crashed_finish, is_finish, run_start, run_url
from tracklogd.testing import finish, history, make_ref
from tracklogd.testing import run_start as start_record


def test_the_configuration_comes_from_the_environment_with_defaults() -> None:
    env = {
        "TRACKLOG_DAEMON_IDLE_TIMEOUT": "5",
        "TRACKLOG_FSYNC_INTERVAL": "0.5",
        "TRACKLOG_HEARTBEAT_INTERVAL": "2",
        "TRACKLOG_HEARTBEAT_TIMEOUT": "30",
    }
    config = DaemonConfig.from_env(env)

    assert (config.idle_timeout, config.fsync_interval) == (5.0, 0.5)
    assert (config.heartbeat_interval, config.heartbeat_timeout) == (2.0, 30.0)
    assert DaemonConfig.from_env({}) == DaemonConfig()
    assert DaemonConfig().idle_timeout == 120.0
    assert DaemonConfig().fsync_interval == 1.0
    assert DaemonConfig().heartbeat_interval == 2.0


def test_the_capture_settings_come_from_the_environment_with_defaults() -> None:
    default = DaemonConfig()
    assert (default.system_metrics, default.capture_metadata) == (True, True)
    assert (default.system_sample_interval, default.system_report_interval) == (2.0, 10.0)

    config = DaemonConfig.from_env(
        {
            "TRACKLOG_SYSTEM_METRICS": "false",
            "TRACKLOG_SYSTEM_SAMPLE_INTERVAL": "0.5",
            "TRACKLOG_SYSTEM_REPORT_INTERVAL": "30",
            "TRACKLOG_METADATA": "off",
        }
    )

    assert (config.system_metrics, config.capture_metadata) == (False, False)
    assert (config.system_sample_interval, config.system_report_interval) == (0.5, 30.0)
    assert DaemonConfig.from_env({"TRACKLOG_SYSTEM_METRICS": "1"}).system_metrics


def test_a_bad_capture_switch_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    config = DaemonConfig.from_env(
        {"TRACKLOG_SYSTEM_METRICS": "sometimes", "TRACKLOG_SYSTEM_SAMPLE_INTERVAL": "0"}
    )

    assert config.system_metrics is True
    assert config.system_sample_interval == 2.0
    assert "TRACKLOG_SYSTEM_METRICS" in caplog.text
    assert "TRACKLOG_SYSTEM_SAMPLE_INTERVAL" in caplog.text


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_bad_setting_is_ignored_with_a_warning(value: str, caplog: pytest.LogCaptureFixture) -> None:
    config = DaemonConfig.from_env({"TRACKLOG_DAEMON_IDLE_TIMEOUT": value})

    assert config.idle_timeout == 120.0
    assert "TRACKLOG_DAEMON_IDLE_TIMEOUT" in caplog.text


def test_the_local_server_command_line_is_the_servers_documented_one(tmp_path: Path) -> None:
    assert server_command(tmp_path, 120.0, 7071) == [
        sys.executable,
        "-m",
        "tracklog_server",
        "--db",
        f"sqlite:///{tmp_path}/store.db",
        "--unix-socket",
        str(tmp_path / "store.sock"),
        "--http-port",
        "7071",
        "--http-token-file",
        str(tmp_path / "http-token"),
        "--address-file",
        str(tmp_path / "server.json"),
        "--heartbeat-timeout",
        "120",
    ]


def test_the_local_server_keeps_its_http_port_across_restarts_while_it_is_free(tmp_path: Path) -> None:
    first = choose_http_port(tmp_path)
    assert choose_http_port(tmp_path) == first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        moved = choose_http_port(tmp_path)
    assert moved != first
    assert choose_http_port(tmp_path) == moved


def test_a_port_asked_for_is_used_and_remembered_and_one_in_time_wait_stays_free(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        asked = int(probe.getsockname()[1])
    assert choose_http_port(tmp_path, asked) == asked
    assert choose_http_port(tmp_path) == asked  # remembered for the next server
    # A server that stopped while a connection was open leaves it in TIME_WAIT: still the same port.
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", asked))
        server.listen()
        client = socket.create_connection(("127.0.0.1", asked))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end waits in TIME_WAIT
        client.close()
    assert choose_http_port(tmp_path) == asked


def test_a_finish_is_recognised_from_its_first_byte_and_nothing_else_is() -> None:
    assert is_finish(finish())
    assert is_finish(crashed_finish(7, 1.0))
    assert not is_finish(history(3))
    assert not is_finish(start_record(make_ref()))
    assert not is_finish(b"")
    record = records_pb2.Record.FromString(crashed_finish(7, 1.0))
    assert (record.finish.state, record.finish.exit_code) == (records_pb2.RUN_STATE_CRASHED, -1)
    assert record.finish.reason == "training process 7 vanished"


def test_the_run_start_gives_the_run_and_other_records_give_none() -> None:
    start = run_start(start_record(make_ref("abc"), name="n"))
    assert start is not None
    assert (start.ref.id, start.name) == ("abc", "n")
    assert run_start(history(1)) is None


def test_a_run_url_joins_the_store_page_base_and_the_run_path() -> None:
    assert run_url("http://h:1/", make_ref()) == "http://h:1/me/proj/runs/run1"
    assert run_url("", make_ref()) == ""


def test_pending_entries_round_trip_and_an_unreadable_one_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pending = PendingDir(tmp_path / "pending")
    entry = PendingEntry("me/proj/run1", "/runs/r", "/runs/r/run-run1.tlog", "", 77)
    pending.write(entry)
    (tmp_path / "pending" / "broken.json").write_text("{not json")

    assert pending.load() == [entry]
    assert entry.run_ref() == make_ref()
    assert "broken.json" in caplog.text
    pending.remove("me/proj/run1")
    pending.remove("me/proj/run1")  # already gone: fine
    assert pending.load() == []


def test_a_repeated_failure_is_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    ratelog = RateLimitedLog(logging.getLogger("tracklogd.test"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            ratelog.warning("k", "store down")
        now[0] = 11.0
        ratelog.warning("k", "store down")

    assert [r.getMessage() for r in caplog.records] == [
        "store down",
        "store down (4 similar messages suppressed)",
    ]
