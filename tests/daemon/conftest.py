"""Fixtures for the daemon tests: a fake store on a real gRPC port, in-process daemons on a real unix
socket, real daemon processes (``python -m tracklogd``) that tests can signal, and for the capture
a dirty Git checkout and stand-in training processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.helpers import (
    CLIENT_PID,
    TRAINER,
    DaemonProcess,
    GitRepo,
    MakeDaemon,
    SpawnDaemon,
    StartTrainer,
    run_git,
)
from tests.e2e.conftest import stop_home_servers
from tracklog import _home
from tracklogd import Daemon, DaemonConfig
from tracklogd.testing import FakePids, FakeStoreServer, StaticLocalServer


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = _home.ensure_home(tmp_path / "home")
    yield path
    stop_home_servers(path)  # a local store outlives its daemon
    short = _home.socket_path(path).parent
    if short != path:  # the short socket directory a long home path gets under the temp dir
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "tracklog" / "run-1"


@pytest.fixture
def store() -> Iterator[FakeStoreServer]:
    with FakeStoreServer() as server:
        yield server


@pytest.fixture
def pids() -> FakePids:
    return FakePids(CLIENT_PID)


@pytest.fixture
def make_daemon(home: Path, store: FakeStoreServer, pids: FakePids) -> Iterator[MakeDaemon]:
    """Starts in-process daemons on ``home`` (closed at the end); the local server is the fake store.
    Keyword arguments override DaemonConfig fields and Daemon parameters. The automatic capture is
    off unless a test turns it on (``system_metrics=True``, ``capture_metadata=True``): its records
    would interleave with the replies other tests read one by one."""
    daemons: list[Daemon] = []

    def make(**overrides: object) -> Daemon:
        config_fields = {
            k: overrides.pop(k) for k in list(overrides) if k in DaemonConfig.__dataclass_fields__
        }
        defaults = {"heartbeat_interval": 3600.0, "system_metrics": False, "capture_metadata": False}
        config = DaemonConfig(**{**defaults, **config_fields})
        options: dict[str, object] = {
            "config": config,
            "pid_alive": pids,
            "local_server": StaticLocalServer(store.target),
            **overrides,
        }
        daemon = Daemon(home, **options)
        daemons.append(daemon)
        daemon.start()
        return daemon

    yield make
    for daemon in daemons:
        daemon.close()


@pytest.fixture
def spawn_daemon(home: Path, store: FakeStoreServer) -> Iterator[SpawnDaemon]:
    """Starts daemon processes on ``home``; extra environment by keyword. server.json names the
    fake store, so the daemon reuses it as its local server instead of starting a real one."""
    procs: list[DaemonProcess] = []
    (home / "server.json").write_text(json.dumps({"grpc": store.target, "http": "", "pid": os.getpid()}))

    def spawn(ready: bool = True, **env: str) -> DaemonProcess:
        full_env = {**os.environ, "TRACKLOG_HEARTBEAT_INTERVAL": "3600", **env}
        proc = DaemonProcess(home, full_env)
        procs.append(proc)
        return proc.wait_ready() if ready else proc

    yield spawn
    for proc in procs:
        proc.kill()


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    """A checkout on branch main with one commit, a remote URL holding credentials, and changes:
    train.py modified (to the stand-in trainer), a binary file modified and staged, an untracked
    file."""
    root = tmp_path / "repo"
    root.mkdir()
    run_git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("print('first version')\n")
    (root / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (root / "README").write_text("unchanged\n")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "first")
    run_git(root, "remote", "add", "origin", "https://someone:s3cret-token@git.example.com/team/repo.git")
    (root / "train.py").write_text(TRAINER)
    (root / "weights.bin").write_bytes(bytes(reversed(range(256))) * 4)
    run_git(root, "add", "weights.bin")
    (root / "notes.txt").write_text("not tracked\n")
    commit = run_git(root, "rev-parse", "HEAD").strip()
    return GitRepo(root=root, commit=commit)


@pytest.fixture
def start_trainer() -> Iterator[StartTrainer]:
    """Starts stand-in training processes (``python ARGS`` in a directory, extra environment by
    keyword) running ``TRAINER``, and returns once each has said it is ready: ``Popen`` returns
    while ``execve`` may still be setting up the child's command line and environment, which a
    real training process calling ``init()`` is long past."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(cwd: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SLURM_") and k != "KUBERNETES_SERVICE_HOST"
        }
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env={**inherited, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", "the stand-in trainer did not start"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
