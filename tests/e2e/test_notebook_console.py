"""Console capture inside a real Jupyter kernel: what cells print (stdout and stderr) is recorded as the
run's log, the notebook still shows it, and finishing the run gives the kernel its streams back."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tracklog
from tests.e2e.conftest import wait_for

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.slow


class Kernel:
    """A real ipykernel process; ``run`` executes one cell and returns what the notebook would show."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.manager = jupyter_client.KernelManager(connection_file=str(cwd / "kernel.json"))
        # This interpreter, so the kernel imports the tracklog under test.
        self.manager.kernel_spec.argv = [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
        ]
        self.manager.start_kernel(env=env, cwd=str(cwd))
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str) -> dict[str, str]:
        shown: dict[str, str] = {"stdout": "", "stderr": ""}

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                shown[msg["content"]["name"]] += msg["content"]["text"]
            elif msg["msg_type"] == "error":
                shown["stderr"] += "\n".join(msg["content"]["traceback"])

        reply = self.client.execute_interactive(code, timeout=60, output_hook=hook)
        assert reply["content"]["status"] == "ok", (code, shown)
        return shown

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(env: dict[str, str], tmp_path: Path) -> Iterator[Kernel]:
    k = Kernel(env, tmp_path)
    yield k
    k.stop()


def test_a_run_in_a_kernel_records_what_cells_print_and_the_notebook_still_shows_it(kernel: Kernel) -> None:
    kernel.run("import sys, tracklog\nbefore = sys.stdout, sys.stderr\nrun = tracklog.init(project='nb')")
    path = kernel.run("print(run.path)")["stdout"].strip()
    assert kernel.run("print(sys.stdout is before[0])")["stdout"] == "False\n"  # captured meanwhile
    shown = kernel.run("for i in range(3):\n    print('line', i)\nprint('to stderr', file=sys.stderr)")
    assert shown["stdout"] == "line 0\nline 1\nline 2\n"
    assert shown["stderr"] == "to stderr\n"
    kernel.run("import os\nos.system('echo from a child process')")
    kernel.run(
        "import threading\nt = threading.Thread(target=print, args=('from a thread',))\nt.start()\nt.join()"
    )
    kernel.run("print('partial, no newline', end='')")
    kernel.run("run.finish()")
    after = kernel.run("print('after finish', (sys.stdout, sys.stderr) == before)")
    assert after["stdout"] == "after finish True\n"

    with tracklog.Api() as api:
        run = wait_for(lambda: (r := api.run(path)).state == "finished" and r, 60, "the run to finish")
        logs = wait_for(
            lambda: (lines := run.logs()) and "partial, no newline" in lines and lines, 30, "the cells' lines"
        )
    assert logs[logs.index("line 0") :][:4] == ["line 0", "line 1", "line 2", "to stderr"]
    assert logs.count("from a child process") == 1  # fd-level output is still captured, once
    assert logs.count("from a thread") == 1
    assert logs.count("line 1") == 1  # each print recorded once, not once per path
    assert "after finish True" not in logs
