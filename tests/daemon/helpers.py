"""Helpers shared by the daemon tests and their fixtures."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from tracklog import _home
from tracklog.v1 import records_pb2
from tracklogd import Daemon, status
from tracklogd.testing import wait_until

CLIENT_PID = 4242  # the pid in-process tests attach with; FakePids says whether it is alive
# A stand-in training script: says it is ready, then runs until its stdin closes or it is killed.
TRAINER = 'import sys\nprint("ready", flush=True)\nsys.stdin.read()\n'


def local_server(home: Path) -> str:
    """The local store server the daemon of ``home`` reports ("" when none or no daemon)."""
    response = status(home)
    return response.local_server if response is not None else ""


class DaemonProcess:
    """``python -m tracklogd --home HOME`` as a child process of the test."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        with open(home / "daemon.out", "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tracklogd", "--home", str(home)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        self.target = _home.daemon_target(home)

    def wait_ready(self, timeout: float = 15.0) -> DaemonProcess:
        wait_until(lambda: self.proc.poll() is not None or status(self.home, 0.5) is not None, timeout)
        assert self.proc.poll() is None, f"the daemon exited:\n{self.log()}"
        assert status(self.home) is not None, f"the daemon did not come up:\n{self.log()}"
        return self

    def kill(self, sig: int = signal.SIGKILL) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(15)

    def log(self) -> str:
        parts = []
        for name in ("daemon.out", "daemon.log"):
            path = self.home / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)


MakeDaemon = Callable[..., Daemon]
SpawnDaemon = Callable[..., DaemonProcess]
StartTrainer = Callable[..., "subprocess.Popen[bytes]"]


@dataclass(frozen=True)
class GitRepo:
    root: Path
    commit: str


def run_git(cwd: Path, *args: str) -> str:
    """Runs git in ``cwd`` with a fixed identity and no user or system configuration; its stdout."""
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def system_rows(payload: bytes) -> list[dict[str, float]]:
    """The rows of a serialized ``system`` record, each ``{key: value}`` plus ``_timestamp``."""
    record = records_pb2.Record.FromString(payload)
    assert record.WhichOneof("kind") == "system", record
    batch = record.system
    count = len(batch.timestamps) // 8
    rows: list[dict[str, float]] = [{"_timestamp": t} for t in struct.unpack(f"<{count}d", batch.timestamps)]
    for series in batch.series:
        for row, value in zip(rows, struct.unpack(f"<{count}d", series.values), strict=True):
            row[series.key] = value
    return rows


def system_values(payload: bytes) -> dict[str, float]:
    """The one row of a serialized ``system`` record (the sampler reports one row per window)."""
    rows = system_rows(payload)
    assert len(rows) == 1, rows
    return rows[0]


class RecordingOutbox:
    """An Outbox for RunRegistry tests: keeps what the daemon would send on the stream."""

    def __init__(self) -> None:
        self.stops: list[str] = []
        self.aborts: list[tuple[grpc.StatusCode, str]] = []

    def send_stop(self, reason: str) -> None:
        self.stops.append(reason)

    def abort(self, code: grpc.StatusCode, reason: str) -> None:
        self.aborts.append((code, reason))
