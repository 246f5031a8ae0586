"""Fixtures for the daemon tests: a fake store on a real gRPC port, in-process daemons on a real unix
socket, and real daemon processes (``python -m tracklogd``) that tests can signal."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.helpers import CLIENT_PID, DaemonProcess, MakeDaemon, SpawnDaemon
from tracklog import _home
from tracklogd import Daemon, DaemonConfig
from tracklogd.testing import FakePids, FakeStoreServer, StaticLocalServer


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = _home.ensure_home(tmp_path / "home")
    yield path
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
    Keyword arguments override DaemonConfig fields and Daemon parameters."""
    daemons: list[Daemon] = []

    def make(**overrides: object) -> Daemon:
        config_fields = {
            k: overrides.pop(k) for k in list(overrides) if k in DaemonConfig.__dataclass_fields__
        }
        config = DaemonConfig(**{"heartbeat_interval": 3600.0, **config_fields})
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
