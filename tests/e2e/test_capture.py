"""Automatic capture end to end: metadata and Git, system metrics, console output and files."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import Script, wait_for
from tracklog._spool import frames
from tracklog.testing import read_records
from tracklog.v1 import records_pb2
from tracklogd._own import own_spool_path

pytestmark = pytest.mark.slow


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _finished(api: tracklog.Api, path: str) -> tracklog.Api | None:
    try:
        return api if api.run(path).state == "finished" else None
    except tracklog.NotFoundError:
        return None


def test_a_run_in_a_dirty_checkout_records_commit_stripped_remote_and_a_diff_that_applies(
    script: Callable[..., Script], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "dev@example.invalid")
    _git(repo, "config", "user.name", "dev")
    (repo / "train.py").write_text(
        "import tracklog\nrun = tracklog.init(project='git')\nprint('RUN', run.path, flush=True)\n"
        "run.log({'x': 1.0})\nrun.finish()\n"
    )
    (repo / "data.txt").write_text("one\ntwo\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    _git(repo, "remote", "add", "origin", "https://alice:s3cret-token@git.example.com/team/repo.git")
    commit = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "data.txt").write_text("one\ntwo changed\nthree\n")  # the dirty tree

    s = script(f"import runpy, os; os.chdir({str(repo)!r}); runpy.run_path('train.py', run_name='__main__')")
    path = s.wait_line("RUN ")
    assert s.wait() == 0, s.err
    with tracklog.Api() as api:
        wait_for(lambda: _finished(api, path), 30, "the run to finish")
        run = wait_for(lambda: (r := api.run(path)).metadata.get("git") and r, 30, "the run's metadata")
        git = run.metadata["git"]
        assert git["commit"] == commit
        assert git["branch"] == "main"
        assert git["dirty"] is True
        assert git["remote"] == "https://git.example.com/team/repo.git"
        assert "s3cret" not in str(run.metadata)
        names = wait_for(
            lambda: {f.name for f in run.files()} >= {"diff.patch", "requirements.txt"} and run, 30
        )
        assert names
        patch = run.file("diff.patch").download(tmp_path / "downloads")
        requirements = run.file("requirements.txt").download(tmp_path / "downloads").read_text()
    assert "tracklog" in requirements.lower()
    clean = tmp_path / "clean"
    _git(tmp_path, "clone", "-q", str(repo), str(clean))
    _git(clean, "checkout", "-q", commit)
    _git(clean, "apply", str(patch))
    assert (clean / "data.txt").read_text() == "one\ntwo changed\nthree\n"


def test_system_metrics_arrive_at_the_configured_cadence_and_show_the_process_memory_rise(
    script: Callable[..., Script],
) -> None:
    s = script(
        """
        import time, tracklog
        run = tracklog.init(project="system")
        print("RUN", run.path, flush=True)
        t0 = time.monotonic()
        hold = None
        while time.monotonic() - t0 < 6.0:
            if hold is None and time.monotonic() - t0 > 3.0:
                hold = bytearray(500 * 1024 * 1024)  # 500 MB, touched so it is resident
                for i in range(0, len(hold), 4096):
                    hold[i] = 1
            run.log({"t": time.monotonic() - t0})
            time.sleep(0.01)
        run.finish()
        """,
        TRACKLOG_SYSTEM_SAMPLE_INTERVAL="0.1",
        TRACKLOG_SYSTEM_REPORT_INTERVAL="0.5",
    )
    path = s.wait_line("RUN ")
    assert s.wait() == 0, s.err
    with tracklog.Api() as api:
        wait_for(lambda: _finished(api, path), 30, "the run to finish")
        rows = api.run(path).system_history()
    assert len(rows) >= 8  # about one row per 0.5 s window over 6 s
    gaps = [b["_timestamp"] - a["_timestamp"] for a, b in itertools.pairwise(rows)]
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(0.5, abs=0.2)
    assert "system/cpu" in rows[0]
    rss = [r["system/proc.memory.rssMB"] for r in rows if "system/proc.memory.rssMB" in r]
    assert max(rss) - min(rss) > 400


def test_console_output_reaches_the_store_in_order(script: Callable[..., Script]) -> None:
    s = script(
        """
        import ctypes, logging, sys, tracklog
        run = tracklog.init(project="console", config={"lr": 0.5})
        print("RUN", run.path, flush=True)
        print("alpha")
        logging.warning("beta")
        ctypes.CDLL(None).write(1, b"gamma from C\\n", 13)
        print("delta")
        run.finish()
        """
    )
    path = s.wait_line("RUN ")
    assert s.wait() == 0, s.err
    with tracklog.Api() as api:
        wait_for(lambda: _finished(api, path), 30, "the run to finish")
        run = api.run(path)
        logs = run.logs()
        assert logs[-4:] == ["alpha", "WARNING:root:beta", "gamma from C", "delta"]
        names = {f.name for f in run.files()}
        assert {"output.log", "config.json", "metadata.json", "requirements.txt"} <= names
        assert run.runtime > 0
        assert 0 < run.tracked_seconds <= run.runtime


def test_system_metrics_cover_a_12s_hang_of_a_process_that_is_then_sigkilled(
    script: Callable[..., Script],
) -> None:
    # The hang holds the GIL, as a C extension that never returns or a deadlock would: no thread of
    # the training process runs, so nothing that travels through it could record the hang.
    interval = 1.0
    s = script(
        """
        import sys, time, tracklog
        run = tracklog.init(project="hang")
        print("RUN", run.path, flush=True)
        for i in range(20):
            run.log({"x": float(i)})
            time.sleep(0.02)
        sys.setswitchinterval(1000.0)  # the other threads wait for the GIL for 1000 s
        print("HANG", time.time(), flush=True)
        while True:
            pass
        """,
        TRACKLOG_SYSTEM_SAMPLE_INTERVAL="0.25",
        TRACKLOG_SYSTEM_REPORT_INTERVAL=str(interval),
    )
    path = s.wait_line("RUN ")
    hang_start = float(s.wait_line("HANG "))
    with tracklog.Api() as api:

        def rows_after(t: float) -> list[dict[str, float]]:
            try:
                return [r for r in api.run(path).system_history() if r["_timestamp"] >= t]
            except tracklog.NotFoundError:
                return []  # not synced yet

        # They arrive while the process hangs: the store holds 12 s of them before it is killed.
        wait_for(lambda: rows_after(hang_start + 12.0), 60, "system metrics 12 s into the hang")
        assert s.proc.poll() is None  # still hanging
        s.proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        s.proc.wait()
        wait_for(lambda: api.run(path).state == "crashed", 30, "the run to end crashed")
        # The run's last window is written once the daemon finished it as crashed.
        wait_for(lambda: rows_after(killed_at - interval), 30, "the last window before the kill")
        rows = rows_after(hang_start)
    times = [r["_timestamp"] for r in rows]
    # Reports come once per interval; a little slack for a busy machine's scheduler.
    slack = 0.5
    assert times[0] - hang_start <= interval + slack
    assert max(b - a for a, b in itertools.pairwise(times)) <= interval + slack
    assert times[-1] >= killed_at - interval - slack
    assert len(rows) >= 12
    # The hung process's own memory, in every window before it was killed.
    assert all(r.get("system/proc.memory.rssMB", 0.0) > 1.0 for r in rows if r["_timestamp"] < killed_at)


def test_the_training_process_never_receives_or_encodes_the_daemons_records(
    script: Callable[..., Script], tmp_path: Path
) -> None:
    s = script(
        """
        import time, tracklog
        run = tracklog.init(project="own")
        print("RUN", run.path, flush=True)
        print("DIR", run.dir, flush=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            run.log({"t": time.monotonic() - t0})
            time.sleep(0.01)
        run.finish()
        """,
        TRACKLOG_SYSTEM_SAMPLE_INTERVAL="0.1",
        TRACKLOG_SYSTEM_REPORT_INTERVAL="0.2",
    )
    path = s.wait_line("RUN ")
    run_dir = Path(s.wait_line("DIR "))
    assert s.wait() == 0, s.err
    with tracklog.Api() as api:
        wait_for(lambda: _finished(api, path), 30, "the run to finish")
        run = wait_for(lambda: (r := api.run(path)).metadata.get("python") and r, 30, "the run's metadata")
        assert len(run.system_history()) >= 5

    # What the training process encoded is its spool: none of it is the daemon's.
    client = read_records(run_dir)
    assert {record.WhichOneof("kind") for _, record in client}.isdisjoint({"system", "metadata"})
    client_files = {record.file.name for _, record in client if record.WhichOneof("kind") == "file"}
    assert client_files.isdisjoint({"requirements.txt", "diff.patch", "metadata.json"})
    own = [records_pb2.Record.FromString(frame.payload) for frame in frames(own_spool_path(run_dir, run.id))]
    kinds = [record.WhichOneof("kind") for record in own]
    assert kinds.count("system") >= 5
    assert kinds.count("metadata") == 1
    assert "requirements.txt" in {record.file.name for record in own if record.WhichOneof("kind") == "file"}
