"""End-to-end fixtures: real training processes, a real daemon and real store servers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tracklog import _home


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Polls ``predicate`` until it returns something truthy; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def home_server_pids(home: Path) -> list[int]:
    """Pids of the running local store servers of ``home`` (their command line names its server.json),
    whether or not one has written server.json yet."""
    import psutil

    address_file = str(_home.server_info_path(home))
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        command = proc.info["cmdline"] or []
        if "tracklog_server" in command and address_file in command:
            found.append(proc.pid)
    return found


def stop_home_processes(home: Path) -> None:
    """Stops the daemon and the local store servers a test's TRACKLOG_HOME started (a local store
    outlives its daemon, so each is stopped here)."""
    for info in (_home.daemon_info_path(home), _home.server_info_path(home)):
        try:
            pid = int(json.loads(info.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
        _terminate(pid)
    stop_home_servers(home)


def stop_home_servers(home: Path) -> None:
    for pid in home_server_pids(home):
        if pid != os.getpid():
            _terminate(pid)


def daemon_pid(home: Path) -> int | None:
    try:
        return int(json.loads(_home.daemon_info_path(home).read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """This test's TRACKLOG_HOME; its daemon and local store server are stopped afterwards."""
    path = tmp_path / "home"
    yield path
    stop_home_processes(path)


@pytest.fixture
def env(home: Path, tmp_path: Path) -> dict[str, str]:
    """Environment for child processes: this test's home, quick heartbeats, output visible."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLOG_")}
    out.update(
        TRACKLOG_HOME=str(home),
        TRACKLOG_DIR=str(tmp_path),
        TRACKLOG_HEARTBEAT_INTERVAL="0.5",
        TRACKLOG_DAEMON_IDLE_TIMEOUT="60",
        PYTHONUNBUFFERED="1",
    )
    return out


class Script:
    """A training script run as a real child process; its stdout lines can be awaited."""

    def __init__(self, code: str, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []

    def wait_line(self, prefix: str, timeout: float = 60.0) -> str:
        """Reads stdout until a line starting with ``prefix``; returns the rest of that line."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        raise AssertionError(f"no line starting {prefix!r}; stdout so far: {self.lines}; {self.stderr()}")

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def wait(self, timeout: float = 120.0) -> int:
        out, err = self.proc.communicate(timeout=timeout)
        self.lines.extend(out.splitlines(keepends=True))
        self.err = err
        return self.proc.returncode


@pytest.fixture
def script(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Script]]:
    started: list[Script] = []

    def start(code: str, **extra_env: str) -> Script:
        s = Script(code, {**env, **extra_env}, tmp_path)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
        s.proc.wait()
        for stream in (s.proc.stdout, s.proc.stderr):
            if stream is not None:
                stream.close()


class StoreProcess:
    """A `tracklog server` child process on a fixed port, so it can be stopped and started again."""

    def __init__(self, db_url: str, port: int, workdir: Path, heartbeat_timeout: float = 120.0) -> None:
        self.db_url, self.port, self.workdir = db_url, port, workdir
        self.heartbeat_timeout = heartbeat_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = f"127.0.0.1:{port}"

    def start(self) -> None:
        info = self.workdir / f"server-{self.port}.json"
        info.unlink(missing_ok=True)
        log = open(self.workdir / f"server-{self.port}.log", "ab")  # noqa: SIM115 - closed by the child's exit
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "tracklog_server", "--db", self.db_url, "--port", str(self.port),
                "--http-port", "-1", "--address-file", str(info),
                "--heartbeat-timeout", str(self.heartbeat_timeout),
            ],
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        wait_for(info.exists, 30, "the store server to start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        self.proc = None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Callable[..., StoreProcess]]:
    started: list[StoreProcess] = []

    def make(heartbeat_timeout: float = 120.0) -> StoreProcess:
        s = StoreProcess(f"sqlite:///{tmp_path / 'external.db'}", free_port(), tmp_path, heartbeat_timeout)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop(signal.SIGKILL)
