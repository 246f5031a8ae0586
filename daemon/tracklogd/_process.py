"""``python -m tracklogd [--home DIR]``: the daemon as a process.

One per user and machine: the process takes an exclusive flock on ``daemon.lock`` and exits 0 at
once if another holds it (that one is starting or running). It logs to ``daemon.log``, stops
cleanly on SIGTERM, SIGINT or the Shutdown RPC, and releases the lock only after everything is
closed, so "the lock is free" means "no daemon is left".
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from tracklog import _home
from tracklogd._config import DaemonConfig
from tracklogd._daemon import Daemon

log = logging.getLogger("tracklogd")


def acquire_lock(home: Path) -> int | None:
    """The fd holding the daemon lock of ``home``, or None if another process holds it.
    The fd is not inherited by children (PEP 446), so a spawned store server never holds it."""
    fd = os.open(_home.lock_path(home), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def lock_is_free(home: Path) -> bool:
    """True when no daemon holds the lock of ``home`` (checked by taking and dropping it)."""
    fd = acquire_lock(home)
    if fd is None:
        return False
    os.close(fd)
    return True


def _log_to_file(home: Path) -> logging.Handler:
    handler = logging.FileHandler(_home.daemon_log_path(home), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tracklogd", description="the tracklog per-user daemon")
    parser.add_argument("--home", type=Path, help="tracklog home directory (default: $TRACKLOG_HOME)")
    args = parser.parse_args(argv)
    home = _home.ensure_home(args.home.absolute() if args.home else _home.home())
    lock = acquire_lock(home)
    if lock is None:
        return 0  # another daemon is starting or running for this home
    handler = _log_to_file(home)
    try:
        daemon = Daemon(home, config=DaemonConfig.from_env())

        def on_signal(signum: int, frame: FrameType | None) -> None:
            daemon.request_shutdown()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
        try:
            daemon.start()
            while not daemon.wait(1.0):  # a timed wait keeps the main thread responsive to signals
                pass
        except Exception:
            log.exception("tracklogd failed")
            return 1
        finally:
            daemon.close()
        return 0
    finally:
        log.removeHandler(handler)
        handler.close()
        os.close(lock)  # last: the lock is free only once everything above is closed
