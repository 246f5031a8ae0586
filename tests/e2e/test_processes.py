"""Runs in worker processes keep their rows when the workers are terminated, and tracklog never
keeps alive a process that SIGTERM would have ended: real processes, real signals, the real daemon."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import Script, wait_for

pytestmark = pytest.mark.slow


class Program(Script):
    """A user's program in a file (multiprocessing's spawn re-imports it by path), in a session of its
    own; ``wait_line`` as a Script's."""

    def __init__(self, tmp_path: Path, env: dict[str, str], code: str) -> None:
        path = tmp_path / "program.py"
        path.write_text(textwrap.dedent(code))
        self.proc = subprocess.Popen(
            [sys.executable, str(path)],
            cwd=tmp_path,
            env={**env, "TRACKLOG_CONSOLE": "off"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its workers too are ended with it at the test's end
        )
        self.lines: list[str] = []

    def wait(self, timeout: float = 120.0) -> tuple[int, str]:  # type: ignore[override]
        """Exit code and stderr; fails (and kills it) if it does not exit within ``timeout``."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"still running after {timeout}s; stderr: {err[-3000:]}") from None
        self.lines.extend(out.splitlines(keepends=True))
        return self.proc.returncode, err


@pytest.fixture
def program(tmp_path: Path, env: dict[str, str]) -> Iterator[type[Program]]:
    started: list[Program] = []

    class Started(Program):
        def __init__(self, code: str) -> None:  # type: ignore[override]
            super().__init__(tmp_path, env, code)
            started.append(self)

    yield Started
    for p in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.proc.pid, signal.SIGKILL)
        p.proc.communicate()


def _wait_runs(paths: list[str], state: str | tuple[str, ...], rows: int) -> None:
    states = (state,) if isinstance(state, str) else state
    with tracklog.Api() as api:

        def seen() -> list[tuple[str, int] | None]:
            out: list[tuple[str, int] | None] = []
            for path in paths:
                try:
                    run = api.run(path)
                except tracklog.NotFoundError:  # not synced to the store yet
                    out.append(None)
                else:
                    out.append((run.state, run.history_rows))
            return out

        def done() -> bool:
            return all(view is not None and view[0] in states and view[1] == rows for view in seen())

        try:
            wait_for(done, 30, f"{len(paths)} runs {states} with {rows} rows")
        except AssertionError:
            raise AssertionError(f"runs are {list(zip(paths, seen(), strict=True))}") from None


POOL_TERMINATED = """
import multiprocessing as mp, sys, time, tracklog

def work(i, done):
    run = tracklog.init(project="pool", name=f"worker-{i}")
    for step in range(500):
        run.log({"loss": 1.0 / (step + 1)})
    done.put(run.path)
    time.sleep(600)  # never finishes: the pool is terminated while it waits here

if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1] if len(sys.argv) > 1 else "%s")
    done = ctx.Manager().Queue()
    pool = ctx.Pool(2)
    for i in range(2):
        pool.apply_async(work, (i, done))
    print("RUNS", done.get(), done.get(), flush=True)
    pool.terminate()
    pool.join()
    print("JOINED", flush=True)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pool_workers_that_never_finish_keep_every_row_and_end_killed_when_the_pool_is_terminated(
    program: type[Program], method: str
) -> None:
    p = program(POOL_TERMINATED % method)
    paths = p.wait_line("RUNS ").split()
    code, err = p.wait(timeout=60)
    assert code == 0, err
    assert "JOINED\n" in p.lines
    _wait_runs(paths, "killed", 500)


POOL_EXITS = """
import multiprocessing as mp, tracklog

def work(i):
    run = tracklog.init(project="exits")
    for step in range(500):
        run.log({"x": float(step)})
    return run.path

if __name__ == "__main__":
    ctx = mp.get_context("fork")
    paths = []
    for attempt in range(50):
        with ctx.Pool(2) as pool:  # __exit__ terminates the workers, whose runs never finished
            paths += pool.map(work, range(4))
        print("EXITED", attempt, flush=True)
    print("PATHS", *paths, flush=True)
"""


def test_fifty_pool_exits_in_a_row_all_return_and_every_worker_run_keeps_its_rows(
    program: type[Program],
) -> None:
    p = program(POOL_EXITS)
    code, err = p.wait(timeout=400)  # each exit takes about a second; a hung one never returns
    assert code == 0, err
    (paths_line,) = [line for line in p.lines if line.startswith("PATHS ")]
    paths = paths_line.split()[1:]
    assert len(paths) == 200
    # A worker either took the pool's stop sentinel (a normal exit: finished) or its SIGTERM
    # (killed); never crashed, and never without its rows.
    _wait_runs(paths, ("finished", "killed"), 500)


SIGKILLED_WORKER = """
import multiprocessing as mp, time, tracklog

def work(ready):
    run = tracklog.init(project="killed")
    for step in range(500):
        run.log({"x": float(step)})
    ready.put(run.path)
    time.sleep(600)

if __name__ == "__main__":
    ctx = mp.get_context("fork")
    ready = ctx.SimpleQueue()
    worker = ctx.Process(target=work, args=(ready,))
    worker.start()
    print("RUN", ready.get(), worker.pid, flush=True)
    worker.join()
    print("EXITCODE", worker.exitcode, flush=True)
"""


def test_a_sigkilled_worker_leaves_its_run_crashed_with_the_rows_the_daemon_got(
    program: type[Program],
) -> None:
    p = program(SIGKILLED_WORKER)
    path, pid = p.wait_line("RUN ").split()
    _wait_runs([path], "running", 500)  # the sender ships within 100 ms: the daemon has them all
    os.kill(int(pid), signal.SIGKILL)
    code, err = p.wait(timeout=60)
    assert code == 0, err
    assert f"EXITCODE {-signal.SIGKILL}\n" in p.lines
    _wait_runs([path], "crashed", 500)


BLOCKED = """
import multiprocessing as mp, signal, sys, threading, tracklog

run = tracklog.init(project="blocked")
for step in range(100):
    run.log({"x": float(step)})
lock = mp.Lock() if sys.argv[1] == "mp" else threading.Lock()
lock.acquire()
if sys.argv[2] == "thread":
    # The kernel may hand a process's SIGTERM to any thread that does not block it; deliver it
    # to another thread on purpose, as it happens now and then with tracklog's and gRPC's threads.
    main = threading.get_ident()
    def aim():
        print("RUN", run.path, flush=True)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    threading.Timer(0.5, aim).start()
else:
    print("RUN", run.path, flush=True)
lock.acquire()  # blocks for ever: only the signal ends this process
"""


@pytest.mark.parametrize("lock", ["mp", "threading"])
@pytest.mark.parametrize("target", ["process", "thread"])
def test_a_sigterm_while_the_main_thread_is_blocked_on_a_lock_ends_the_process_promptly_and_the_run_killed(
    program: type[Program], tmp_path: Path, lock: str, target: str
) -> None:
    p = program(BLOCKED.replace("sys.argv[1]", repr(lock)).replace("sys.argv[2]", repr(target)))
    path = p.wait_line("RUN ")
    if target == "process":
        p.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code, err = p.wait(timeout=30)
    assert code == -signal.SIGTERM, err  # died as SIGTERM's default action would
    assert time.monotonic() - started < 15
    _wait_runs([path], "killed", 100)
