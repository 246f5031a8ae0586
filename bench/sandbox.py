"""One repetition's isolation: a temp directory with its own TRACKLOG_HOME/TRACKLOG_DIR, wandb and MLflow
directories; workloads run in it as fresh processes; close() stops the daemon and local store server it
started (SIGTERM to the pids in daemon.json/server.json) and removes the directory.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil
from forkhost import ForkHost

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "bench" / "workloads"
sys.path.insert(0, str(WORKLOADS))

import _common as common  # noqa: E402  # the workloads' helpers, found through the path set just above

__all__ = [
    "ROOT",
    "TRASH",
    "WORKLOADS",
    "RssSampler",
    "Sandbox",
    "WorkloadFailed",
    "base_env",
    "common",
    "empty_trash",
    "stop_tracklog",
]

_CLEARED_PREFIXES = ("TRACKLOG_", "WANDB_", "MLFLOW_")


class WorkloadFailed(RuntimeError):
    pass


def base_env() -> dict[str, str]:
    """The caller's environment without its tracklog, wandb and MLflow settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED_PREFIXES)}


def _env(directory: Path, tool: str) -> dict[str, str]:
    env = base_env()
    env.update(
        TRACKLOG_HOME=str(directory / "home"),
        TRACKLOG_DIR=str(directory),
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DIR=str(directory),
        WANDB_CACHE_DIR=str(directory / "wandb-cache"),
        WANDB_CONFIG_DIR=str(directory / "wandb-config"),
        WANDB_DATA_DIR=str(directory / "wandb-data"),
        MLFLOW_ALLOW_FILE_STORE="true",  # MLflow 3 keeps the file store behind this switch
        PYTHONUNBUFFERED="1",
    )
    if tool == "mlflow-sqlite":
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{directory / 'mlflow.db'}"
    else:
        env["MLFLOW_TRACKING_URI"] = (directory / "mlruns").as_uri()
    return env


class RssSampler(threading.Thread):
    """Peak RSS of the background processes while a workload runs: tracklog's daemon and store server
    (from the home's pid files), or the workload's child processes (wandb's service and helpers)."""

    def __init__(self, workload_pid: int, home: Path | None, interval: float = 0.1) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self._pid = workload_pid
        self._home = home
        self._interval = interval
        self._stop_event = threading.Event()
        self.peak_mb: dict[str, float] = {}
        self.seen_pids: set[int] = set()

    def _roles(self) -> dict[str, int]:
        if self._home is not None:
            return common.tracklog_pids(self._home)
        try:
            return {p.name(): p.pid for p in psutil.Process(self._pid).children(recursive=True)}
        except psutil.Error:
            return {}

    def run(self) -> None:
        while not self._stop_event.is_set():
            for role, pid in self._roles().items():
                self.seen_pids.add(pid)
                value = common.rss_mb(pid)
                if not math.isnan(value):
                    self.peak_mb[role] = max(self.peak_mb.get(role, 0.0), value)
            self._stop_event.wait(self._interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


# Removing a sandbox can take a minute on a slow disk (MLflow's file store holds tens of thousands of
# small files), so closed sandboxes are moved here and removed in the background after the suite.
TRASH = Path(tempfile.gettempdir()) / f"tlbench-trash-{os.getpid()}"


def empty_trash() -> None:
    """Removes the closed sandboxes in a detached process, so the suite does not wait for the disk."""
    if TRASH.exists():
        subprocess.Popen(
            ["rm", "-rf", str(TRASH)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


class Sandbox:
    def __init__(self, tool: str, label: str) -> None:
        self.tool = tool
        self.dir = Path(tempfile.mkdtemp(prefix=f"tlbench-{label}-"))
        self.home = self.dir / "home"
        self.env = _env(self.dir, tool)
        self._runs = 0
        self._extra_pids: set[int] = set()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self,
        script: str,
        *args: str,
        timeout: float = 900.0,
        sample_rss: bool = False,
        host: ForkHost | None = None,
    ) -> dict[str, Any]:
        """Runs ``bench/workloads/<script>`` in a fresh process (with ``host``: a child forked from
        that script's host, see bench/forkhost.py); returns its result (and peak RSS of the
        background processes when ``sample_rss``). Raises WorkloadFailed with its log's tail."""
        self._runs += 1
        out = self.dir / f"result-{self._runs}.json"
        log_path = self.dir / f"log-{self._runs}.txt"
        argv = [*args, "--out", str(out), "--workdir", str(self.dir)]
        peak_mb = None
        if host is not None:
            rc = host.run(argv, env=self.env, cwd=self.dir, log=log_path, timeout=timeout)
        else:
            cmd = [sys.executable, str(WORKLOADS / script), *argv]
            rc, peak_mb = self._popen(cmd, log_path, timeout, sample_rss)
        result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
        if peak_mb is not None:
            result["peak_rss_mb"] = peak_mb
        if rc != 0:
            tail = log_path.read_text(errors="replace")[-3000:]
            message = result.get("error") or f"exit status {rc}"
            raise WorkloadFailed(f"{script} {' '.join(args)} ({self.tool}): {message}\n{tail}")
        return result

    def _popen(
        self, cmd: list[str], log_path: Path, timeout: float, sample_rss: bool
    ) -> tuple[int, dict[str, float] | None]:
        """Exit status, and the peak RSS of the background processes when ``sample_rss``."""
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=self.dir, env=self.env, stdout=log, stderr=log)
            sampler = None
            if sample_rss and self.tool in ("tracklog", "wandb"):
                sampler = RssSampler(proc.pid, self.home if self.tool == "tracklog" else None)
                sampler.start()
            try:
                rc = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = -9
            finally:
                if sampler is not None:
                    sampler.stop()
                    self._extra_pids |= sampler.seen_pids if self.tool == "tracklog" else set()
        return rc, sampler.peak_mb if sampler is not None else None

    def close(self) -> None:
        stop_tracklog(self.home, self._extra_pids)
        try:
            TRASH.mkdir(exist_ok=True)
            os.replace(self.dir, TRASH / self.dir.name)
        except OSError:
            shutil.rmtree(self.dir, ignore_errors=True)


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stop_tracklog(home: Path, extra_pids: Iterable[int] = ()) -> None:
    """SIGTERMs the daemon and the store server of ``home`` (only processes whose command line names
    the home, so a recycled pid is never hit), then SIGKILLs what is left after 15 s."""
    procs: list[psutil.Process] = []
    for pid in set(common.tracklog_pids(home).values()) | set(extra_pids):
        try:
            proc = psutil.Process(pid)
            if str(home) in " ".join(proc.cmdline()) and not _gone(proc):
                procs.append(proc)
        except psutil.Error:
            continue
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15.0
    while procs and time.monotonic() < deadline:
        procs = [p for p in procs if not _gone(p)]
        time.sleep(0.05)  # waiting for processes that are not our children to exit
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
