"""Helpers shared by the workload scripts: each workload runs in a fresh process started by
bench/run.py, measures one thing and writes its figures as JSON to the path given by ``--out``.

Only the standard library and psutil are imported here, so that importing this module does not
change what a workload measures (tracklog, wandb, mlflow and torch are imported by the workloads).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

KEYS = tuple(f"k{i}" for i in range(10))
MB = 1024 * 1024


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, required=True, help="write the result JSON here")
    p.add_argument("--workdir", type=Path, required=True, help="this repetition's own temp directory")
    return p


def write_result(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=True))
    os.replace(tmp, path)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, nearest rank."""
    if not sorted_values:
        return math.nan
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return float(sorted_values[rank])


def call_stats_us(durations_ns: Iterable[int]) -> dict[str, float]:
    values = sorted(durations_ns)
    return {
        "p50_us": percentile(values, 50) / 1000,
        "p90_us": percentile(values, 90) / 1000,
        "p99_us": percentile(values, 99) / 1000,
        "p999_us": percentile(values, 99.9) / 1000,
        "max_us": values[-1] / 1000 if values else math.nan,
        "mean_us": sum(values) / len(values) / 1000 if values else math.nan,
    }


def timer_floor_ns(n: int = 20_000) -> float:
    """The median of two back-to-back perf_counter_ns() calls: the timer's own cost in a call figure."""
    pc = time.perf_counter_ns
    out = []
    for _ in range(n):
        t0 = pc()
        out.append(pc() - t0)
    out.sort()
    return float(out[len(out) // 2])


def tracklog_pids(home: Path) -> dict[str, int]:
    """The pids of the daemon and the local store server of ``home`` (from daemon.json/server.json)."""
    pids: dict[str, int] = {}
    for role, name in (("daemon", "daemon.json"), ("server", "server.json")):
        try:
            pid = int(json.loads((home / name).read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        pids[role] = pid
    return pids


def cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    """User + system CPU seconds of a process (and of its reaped children); NaN when it is gone."""
    try:
        t = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return math.nan
    total = t.user + t.system
    if with_children:
        total += t.children_user + t.children_system
    return float(total)


def rss_mb(pid: int) -> float:
    try:
        return float(psutil.Process(pid).memory_info().rss / MB)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return math.nan


def descendants() -> list[psutil.Process]:
    """Child processes of this one (wandb's service and its helpers), recursively."""
    try:
        return list(psutil.Process().children(recursive=True))
    except psutil.Error:
        return []


def tree_cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    """CPU seconds of the given processes, each with its reaped children (so that a helper that
    exited in between is still counted through its parent)."""
    total = 0.0
    for proc in procs:
        value = cpu_seconds(proc.pid, with_children=True)
        if not math.isnan(value):
            total += value
    return total


def row(i: int) -> dict[str, float]:
    """A 10-scalar row as a training loop would build it (new float objects each call)."""
    x = i * 0.001
    return {
        "k0": x,
        "k1": x + 1.0,
        "k2": x + 2.0,
        "k3": x + 3.0,
        "k4": x + 4.0,
        "k5": x + 5.0,
        "k6": x + 6.0,
        "k7": x + 7.0,
        "k8": x + 8.0,
        "k9": x + 9.0,
    }


def wait_for_rows(api: Any, path: str, rows: int, timeout: float, stall: float = 30.0) -> tuple[bool, Any]:
    """Polls the store until the run has ``rows`` history rows and is finished; (ok, last view).

    Gives up after ``timeout``, or sooner when the stored row count and state have not moved for
    ``stall`` seconds (data that stopped flowing is a failure to report, not to wait out).
    """
    start = time.monotonic()
    last_change, last_seen = start, None
    view: Any = None
    while True:
        try:
            view = api.run(path)
        except Exception:  # the run is not in the store yet (NotFoundError) or the server is busy
            view = None
        now = time.monotonic()
        seen = None if view is None else (view.history_rows, view.state)
        if seen is not None and seen == (rows, "finished"):
            return True, view
        if seen != last_seen:
            last_change, last_seen = now, seen
        if now - start >= timeout or now - last_change >= stall:
            return False, view
        # Polling the store is what a user waiting for the data would do. Every 100 ms: each poll is
        # a query the store server answers, and its CPU counts against tracklog's per-row figure
        # (at 10 ms, polls were a third of the server's CPU in the hot path); the end-to-end time
        # is at most that much late.
        time.sleep(0.1)


# -- a store server of our own, on a database of our own ------------------------------------------------


class StoreServerProcess:
    """``python -m tracklog_server`` on ``db_url`` (gRPC only), stopped with SIGTERM on close()."""

    def __init__(self, db_url: str, workdir: Path, timeout: float = 120.0) -> None:
        address_file = workdir / f"server-{time.monotonic_ns()}.json"
        self.log_path = address_file.with_suffix(".log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tracklog_server",
                    "--db",
                    db_url,
                    "--port",
                    "0",
                    "--http-port",
                    "-1",
                    "--address-file",
                    str(address_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=workdir,
            )
        deadline = time.monotonic() + timeout
        while not address_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the store server did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.02)  # waiting for another process to write its address file
        self.address = str(json.loads(address_file.read_text())["grpc"])
        self.pid = self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class PostgresDatabase:
    """A temporary database ``tracklog_bench_<random>`` on the local PostgreSQL, dropped on close()."""

    def __init__(self, admin_url: str = POSTGRES_ADMIN_URL) -> None:
        import psycopg

        self._admin_url = admin_url
        self.name = f"tracklog_bench_{secrets.token_hex(4)}"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = admin_url.rsplit("/", 1)[0] + "/" + self.name

    def close(self) -> None:
        import psycopg

        with psycopg.connect(self._admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
