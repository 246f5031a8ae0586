"""Helpers shared by the daemon tests and their fixtures."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tracklog import _home
from tracklogd import Daemon, status
from tracklogd.testing import wait_until

CLIENT_PID = 4242  # the pid in-process tests attach with; FakePids says whether it is alive


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
