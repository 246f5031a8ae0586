"""Finding the per-user daemon, and starting it when none answers.

The SDK keeps its own small launcher (rather than importing ``tracklogd``) so that ``import tracklog``
stays light; the command line is the daemon's own: ``python -m tracklogd --home HOME``.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

from tracklog import _home
from tracklog._errors import CommError

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)


def answers(home: Path) -> bool:
    """True when something accepts connections on the daemon's socket (a cheap, non-gRPC check)."""
    return unix_answers(_home.socket_path(home))


def unix_answers(path: Path) -> bool:
    """True when something accepts connections on the unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(os.fspath(path))
        except OSError:
            return False
    return True


_spawned: list[subprocess.Popen[bytes]] = []  # daemons this process started


def spawn(home: Path) -> None:
    """Starts a daemon detached from this process (its own session, so Ctrl+C here does not reach it).

    Two processes may both spawn one: the daemon's flock lets exactly one of them serve.
    """
    _home.ensure_home(home)
    _spawned[:] = [proc for proc in _spawned if proc.poll() is None]  # reaps daemons that exited
    with open(_home.daemon_log_path(home), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracklogd", "--home", os.fspath(home)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    # Kept, not dropped: a dropped Popen of a running child is a ResourceWarning, and a daemon that
    # exits (idle) is reaped by the next spawn's poll above instead of staying a zombie.
    if not _spawned:
        atexit.register(_outlive)
    _spawned.append(proc)


def _outlive() -> None:
    """At this process's exit: the daemons it started outlive it by design (their own session), so
    their Popen objects are marked done rather than warning that the child still runs."""
    for proc in _spawned:
        if proc.poll() is None:
            proc.returncode = 0  # not waited for: the daemon is detached, and init reparents it
    _spawned.clear()


def ensure_daemon(home: Path, *, timeout: float, start: bool = True) -> str:
    """Returns the daemon's gRPC target, starting the daemon if none answers within ``timeout``."""
    if answers(home):
        return _home.daemon_target(home)
    if not start:
        raise CommError(f"no tracklog daemon answers for {home}")
    spawn(home)
    deadline = time.monotonic() + timeout
    delay = 0.005
    while time.monotonic() < deadline:
        if answers(home):
            return _home.daemon_target(home)
        time.sleep(delay)  # polling a just-spawned process; nothing to wait on but its socket
        delay = min(delay * 1.5, 0.05)
    raise CommError(
        f"the tracklog daemon did not start within {timeout:.1f}s; see {_home.daemon_log_path(home)}"
    )


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
