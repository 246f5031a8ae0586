"""Starting, stopping and asking the daemon of a home, for the CLI (``tracklog daemon ...``).

The SDK has its own tiny launcher (``import tracklog`` must not import tracklogd) with the same
command line: ``[sys.executable, "-m", "tracklogd", "--home", HOME]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

from tracklog import _home
from tracklog.v1 import daemon_pb2, daemon_pb2_grpc
from tracklogd._config import GRPC_MESSAGE_OPTIONS
from tracklogd._errors import DaemonError
from tracklogd._process import lock_is_free


def spawn_command(home: Path) -> list[str]:
    return [sys.executable, "-m", "tracklogd", "--home", str(home)]


def _home_of(home: str | os.PathLike[str] | None) -> Path:
    return Path(home).absolute() if home is not None else _home.home()


def status(
    home: str | os.PathLike[str] | None = None, timeout: float = 2.0
) -> daemon_pb2.StatusResponse | None:
    """The running daemon's status, or None when no daemon answers within ``timeout``."""
    path = _home_of(home)
    if not _home.socket_path(path).exists():
        return None
    with grpc.insecure_channel(_home.daemon_target(path), options=GRPC_MESSAGE_OPTIONS) as channel:
        try:
            response: daemon_pb2.StatusResponse = daemon_pb2_grpc.DaemonStub(channel).Status(
                daemon_pb2.StatusRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return None
    return response


def start(home: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> None:
    """Starts the daemon of ``home`` (detached, own session, output to daemon.log) unless one
    answers already; returns once it answers. Raises DaemonError if it does not within ``timeout``."""
    path = _home.ensure_home(_home_of(home))
    if status(path, timeout=1.0) is not None:
        return
    with open(_home.daemon_log_path(path), "ab") as out:
        proc = subprocess.Popen(
            spawn_command(path),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=path,
            start_new_session=True,  # Ctrl+C in the caller's terminal must not reach the daemon
        )
    # Reap it whenever it exits, so that it never lingers as a zombie of this process.
    threading.Thread(target=proc.wait, name="tracklogd-reaper", daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        if status(path, timeout=0.5) is not None:
            return
        # Exit code 0 means another daemon holds the lock: it is starting, keep asking.
        if proc.returncode not in (None, 0):
            raise DaemonError(
                f"tracklogd exited with code {proc.returncode}; see {_home.daemon_log_path(path)}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DaemonError(
                f"tracklogd did not answer within {timeout:.1f}s; see {_home.daemon_log_path(path)}"
            )
        time.sleep(min(0.02, remaining))  # polling a starting process: nothing to wait on but its socket


def ensure_running(home: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> str:
    """The gRPC target of the daemon of ``home``, started first if none answers."""
    path = _home_of(home)
    if status(path, timeout=1.0) is None:
        start(path, timeout)
    return _home.daemon_target(path)


def stop(home: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> bool:
    """Stops the daemon of ``home``: the Shutdown RPC, else SIGTERM to the pid in daemon.json.
    Returns True once no daemon is left (also when none ran), False if one is still there."""
    path = _home_of(home)
    if not path.is_dir() or lock_is_free(path):
        return True
    requested = False
    if _home.socket_path(path).exists():
        with grpc.insecure_channel(_home.daemon_target(path), options=GRPC_MESSAGE_OPTIONS) as channel:
            try:
                daemon_pb2_grpc.DaemonStub(channel).Shutdown(daemon_pb2.ShutdownRequest(), timeout=2.0)
                requested = True
            except grpc.RpcError:
                pass
    if not requested:
        pid = _daemon_pid(path)
        if pid:
            with contextlib.suppress(OSError):  # already gone
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not lock_is_free(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)  # the lock is released as the daemon's last act; nothing else to wait on
    return True


def _daemon_pid(home: Path) -> int:
    try:
        return int(json.loads(_home.daemon_info_path(home).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
