"""Fixtures for the framework integrations: training scripts run as real child processes, through the
real daemon and local store of this test's TRACKLOG_HOME, and read back with ``tracklog.Api``.

Each script runs with ``-W error``, like the suite: it filters the framework's own warnings that it
expects, each with its reason, and any other warning fails it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import stop_home_processes, wait_for
from tracklog._api import ApiRun


@dataclass
class Trained:
    """A finished training script: its exit code, output, and the run it printed as ``RUN <path>``."""

    returncode: int
    stdout: str
    stderr: str
    path: str


@pytest.fixture
def train(tmp_path: Path) -> Iterator[Callable[[str], Trained]]:
    """Runs a training script (source text) in a child process; stops this test's daemon and store
    afterwards."""
    env = {
        **os.environ,  # TRACKLOG_HOME (this test's) and TRACKLOG_SILENT come from the autouse fixture
        "PYTHONUNBUFFERED": "1",
        "KERAS_BACKEND": "torch",
        "KERAS_HOME": str(tmp_path / "keras"),  # Keras writes keras.json there on import
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",  # nothing is downloaded: models and data are made in the scripts
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("TRACKLOG_SILENT", None)  # the closing lines show what the run stored, if a test fails

    def run(source: str) -> Trained:
        script = tmp_path / "train.py"
        script.write_text(textwrap.dedent(source))
        proc = subprocess.run(
            [sys.executable, "-W", "error", str(script)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        paths = [line[4:].strip() for line in proc.stdout.splitlines() if line.startswith("RUN ")]
        return Trained(proc.returncode, proc.stdout, proc.stderr, paths[-1] if paths else "")

    yield run
    home = Path(os.environ["TRACKLOG_HOME"])
    stop_home_processes(home)


@pytest.fixture
def stored(train: Callable[[str], Trained]) -> Iterator[Callable[..., ApiRun]]:
    """``stored(path, state="finished")``: the run at ``path`` once the store holds it in ``state``
    (waits with a deadline). The query client opens on first use, after the script started the
    daemon, and closes before the daemon stops."""
    clients: list[tracklog.Api] = []

    def get(path: str, state: str = "finished") -> ApiRun:
        if not clients:
            clients.append(tracklog.Api())
        api = clients[0]

        def ended() -> ApiRun | None:
            try:
                run = api.run(path)
            except tracklog.NotFoundError:
                return None
            return run if run.state == state else None

        found: ApiRun = wait_for(ended, 30, f"run {path} to be {state} in the store")
        return found

    yield get
    for client in clients:
        client.close()
