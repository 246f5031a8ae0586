"""A host process that pays a workload's heavy imports once and forks a fresh child per run.

The training workload's runs each spent about 6 s starting Python and importing torch before their
timed loop; 15-20 runs made that a third of the suite. ``ForkHost`` starts
``bench/workloads/<script> --host``, which imports what the script's ``prepare()`` needs (torch, the
data set; no thread is started), then forks one child per job. Each child is a new process with the
job's environment, working directory, argv and log file, in which the tool under test is imported
for the first time, as in a fresh interpreter. It exits as an interpreter does (non-daemon threads
joined, atexit handlers run, output flushed) but without tearing its modules down, and its exit
status comes back as the job's answer.

The protocol is one JSON line per job on the host's stdin, answered by one JSON line ``{"rc": N}`` on
its stdout. A job that does not answer within its timeout kills the host and its children (its own
process group); the next job starts a new host.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ForkHost", "serve"]


class ForkHost:
    def __init__(self, script: Path, env: Mapping[str, str]) -> None:
        self._script = script
        self._env = dict(env)
        self._proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, str(self._script), "--host"],
                env=self._env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,  # its process group holds it and its children, for a kill
            )
        return self._proc

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path, timeout: float
    ) -> int:
        """Runs the script's ``main(argv)`` in a forked child; returns its exit status (-9: killed
        after ``timeout``, or the host died)."""
        proc = self._start()
        assert proc.stdin is not None
        assert proc.stdout is not None
        job = {"argv": list(argv), "env": dict(env), "cwd": str(cwd), "log": str(log)}
        try:
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
        except OSError:
            self.close()
            return -9
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""  # "" too when the host died
        if line:
            return int(json.loads(line)["rc"])
        self.close()
        return -9

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def serve(main: Callable[[list[str], Any], int], prepared: Any) -> int:
    """The host's loop (``<script> --host``): one forked child per job line on stdin."""
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(job)
            sys.argv = [sys.argv[0], *job["argv"]]
            code = 1
            try:
                code = main(job["argv"], prepared)
            except SystemExit as exc:  # as the interpreter treats one: a message means status 1
                if exc.code is not None and not isinstance(exc.code, int):
                    print(exc.code, file=sys.stderr)
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            except BaseException:
                traceback.print_exc()
            _exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
    return 0


def _exit(code: int) -> None:
    """Ends the child as the interpreter's exit does, up to the part no tool depends on: waits for
    its non-daemon threads, runs the atexit handlers (wandb stops its service there), flushes, and
    then skips tearing down the modules, which takes about 1 s with torch loaded."""
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what Py_Finalize runs; there is no public name for it
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _child(job: dict[str, Any]) -> None:
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # the host's job pipe is not the child's to read
    os.close(null)
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
