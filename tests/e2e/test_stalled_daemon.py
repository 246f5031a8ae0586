"""A daemon that stops answering while a run finishes (SIGSTOP: it lives, and holds the run's spool)
loses nothing: finish() gives up on it after its deadline, writes the frames it did not ack to a
rescue file beside the spool, says where on the terminal, and the daemon adds them to the spool when
it goes on (SIGCONT) or when a new one starts (SIGKILL of the stopped one): every row is stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import Script, StoreProcess, daemon_pid, wait_for

pytestmark = pytest.mark.slow

BEFORE, AFTER = 2_000, 3_000  # rows logged before the daemon stops, and while it is stopped


def _state(api: tracklog.Api, path: str) -> str:
    try:
        return api.run(path).state
    except tracklog.NotFoundError:
        return ""


@pytest.mark.parametrize("wake", ["sigcont", "sigkill-and-restart"])
def test_every_row_of_a_run_that_finished_while_its_daemon_was_stopped_is_stored(
    wake: str,
    script: Callable[..., Script],
    store: Callable[..., StoreProcess],
    env: dict[str, str],
    home: Path,
    tmp_path: Path,
) -> None:
    server = store()
    server.start()
    go = tmp_path / "go"
    s = script(
        f"""
        import os, time, tracklog
        run = tracklog.init(project="stall")
        for i in range({BEFORE}):
            run.log({{"x": float(i)}})
        print("RUN", run.path, run.dir, flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
            time.sleep(0.01)  # waiting for the test to stop the daemon
        for i in range({BEFORE}, {BEFORE + AFTER}):
            run.log({{"x": float(i)}})
        run.finish()
        print("DONE", flush=True)
        """,
        TRACKLOG_SERVER=server.address,
    )
    path, run_dir = s.wait_line("RUN ").split()
    run_id = path.rsplit("/", 1)[1]
    pid = daemon_pid(home)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        go.touch()
        assert s.wait(timeout=120) == 0, s.err
        # Rescued, and the user is told where.
        rescue = Path(run_dir) / f"run-{run_id}.tlog.rescue-{s.proc.pid}"
        assert rescue.exists()
        assert str(rescue) in s.err
        assert "could not be kept" not in s.err
        if wake == "sigkill-and-restart":
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not _alive(pid), 30, "the stopped daemon to die")
            command = [sys.executable, "-m", "tracklog", "daemon", "start"]
            started = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            assert started.returncode == 0, started.stderr
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGCONT)

    with tracklog.Api(server.address) as api:
        wait_for(lambda: _state(api, path) == "finished", 60, "the run to end finished")
        wait_for(lambda: api.run(path).history_rows == BEFORE + AFTER, 60, "every row")
        run = api.run(path)
        assert run.rows_lost == 0
        assert [r["_step"] for r in run.scan_history(keys=["x"])] == list(range(BEFORE + AFTER))
    wait_for(lambda: not rescue.exists(), 30, "the rescue file to be merged and removed")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


FILES, FILE_MB, CAP_MB = 12, 16, 8  # 192 MB of files; 8 MB may be held for the daemon


def test_files_saved_while_the_daemon_is_stopped_stay_under_the_memory_cap_and_those_not_sent_are_named(
    script: Callable[..., Script],
    store: Callable[..., StoreProcess],
    home: Path,
    tmp_path: Path,
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    for i in range(FILES):
        (files / f"part{i}.bin").write_bytes(os.urandom(FILE_MB * 2**20))
    server = store()
    server.start()
    go = tmp_path / "go"
    s = script(
        f"""
        import os, time, tracklog

        def status(field):
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith(field + ":"))

        run = tracklog.init(project="stall")
        print("RUN", run.path, flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
            time.sleep(0.01)  # waiting for the test to stop the daemon
        before = status("VmRSS")
        run.save({str(files / "*.bin")!r}, base_path={str(files)!r}, policy="now")
        for i in range(100):
            run.log({{"x": float(i)}})
        run.finish()
        print("GREW_KB", status("VmHWM") - before, flush=True)
        """,
        TRACKLOG_SERVER=server.address,
        TRACKLOG_MAX_BUFFER_MB=str(CAP_MB),
    )
    path = s.wait_line("RUN ")
    pid = daemon_pid(home)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        go.touch()
        assert s.wait(timeout=120) == 0, s.err
    finally:
        os.kill(pid, signal.SIGCONT)

    grew_mb = int(next(line for line in s.lines if line.startswith("GREW_KB")).split()[1]) / 1024
    # Without the cap the process read all 192 MB of files into memory (twice: chunks and frames). With
    # it, what it holds is bounded by the cap, whatever the files' size; the copies gRPC and the
    # rescue file's write make of what is held come on top.
    assert grew_mb < FILES * FILE_MB / 4, f"the training process grew by {grew_mb:.0f} MB"
    named = [f"part{i}.bin (saved with the run as part{i}.bin) was not sent" for i in range(FILES)]
    assert sum(text in s.err for text in named) >= FILES - 2, s.err  # at most half the cap was read
    with tracklog.Api(server.address) as api:
        wait_for(lambda: _state(api, path) == "finished", 60, "the run to end finished")
        run = api.run(path)
        assert run.history_rows == 100
        assert any("file part" in problem and "was not sent" in problem for problem in run.problems)
