"""A training script's ending decides its run's state in the store, through the real daemon."""

from __future__ import annotations

import http.cookiejar
import json
import math
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import Script, StoreProcess, daemon_pid, wait_for

pytestmark = pytest.mark.slow

PREAMBLE = """
import sys, time, tracklog
run = tracklog.init(project="states", config={"lr": 0.01})
print("RUN", run.path, flush=True)
"""


def _state(api: tracklog.Api, path: str) -> str | None:
    try:
        return api.run(path).state
    except tracklog.NotFoundError:
        return None


def test_ten_epochs_end_finished_with_history_config_and_summary(
    script: Callable[..., Script], env: dict[str, str]
) -> None:
    s = script(
        PREAMBLE
        + """

for epoch in range(10):
    run.log({"accuracy": 0.5 + epoch / 20, "loss": 1.0 / (epoch + 1)})
run.finish()
"""
    )
    path = s.wait_line("RUN ")
    assert s.wait() == 0, s.err
    with tracklog.Api() as api:
        wait_for(lambda: _state(api, path) == "finished", 30, "the run to be finished")
        run = api.run(path)
        rows = run.history(pandas=False)
    assert [r["_step"] for r in rows] == list(range(10))
    assert [r["loss"] for r in rows] == [1.0 / (e + 1) for e in range(10)]
    assert run.config == {"lr": 0.01}
    assert run.summary["accuracy"] == rows[-1]["accuracy"]
    assert run.summary["loss"] == rows[-1]["loss"]
    assert all(r["_runtime"] >= 0 for r in rows)
    assert "Run summary:" in s.err
    assert "Run history:" in s.err
    # The closing lines name the run's page, and the page opens and shows the run.
    (url,) = re.findall(r"View run \S+ \(finished\) at: (\S+)", s.err)
    assert re.search(rf"/runs/{path.split('/')[-1]}\?token=[0-9a-f]+$", url)
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with browser.open(url, timeout=10) as page:
        assert page.status == 200  # the web app; it shows what the JSON API answers
    api_url = url.split("?")[0].replace(
        f"/{path.rsplit('/', 1)[0]}/runs/", f"/api/v1/runs/{path.rsplit('/', 1)[0]}/"
    )
    with browser.open(api_url, timeout=10) as answer:
        assert json.loads(answer.read())["name"] == run.name


def test_an_uncaught_exception_ends_the_run_failed(
    script: Callable[..., Script], env: dict[str, str]
) -> None:
    s = script(PREAMBLE + "run.log({'x': 1.0})\nraise RuntimeError('boom')\n")
    path = s.wait_line("RUN ")
    assert s.wait() == 1
    assert "RuntimeError: boom" in s.err
    with tracklog.Api() as api:
        wait_for(lambda: _state(api, path) == "failed", 30, "the run to be failed")


def test_sys_exit_with_a_nonzero_code_ends_the_run_failed(
    script: Callable[..., Script], env: dict[str, str]
) -> None:
    s = script(PREAMBLE + "sys.exit(3)\n")
    path = s.wait_line("RUN ")
    assert s.wait() == 3
    with tracklog.Api() as api:
        wait_for(lambda: _state(api, path) == "failed", 30, "the run to be failed")
        assert api.run(path).exit_code == 3


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_end_the_run_killed(
    script: Callable[..., Script], env: dict[str, str], sig: int
) -> None:
    s = script(
        PREAMBLE
        + """
with run:
    i = 0
    while True:
        run.log({"i": float(i)})
        if i == 100:
            print("LOOPING", flush=True)
        i += 1
        time.sleep(0.001)
"""
    )
    path = s.wait_line("RUN ")
    s.wait_line("LOOPING")
    s.proc.send_signal(sig)
    code = s.wait()
    assert code != 0
    with tracklog.Api() as api:
        wait_for(lambda: _state(api, path) == "killed", 30, "the run to be killed")
        assert api.run(path).history_rows >= 100


def test_sigkill_of_the_training_process_ends_the_run_crashed(
    script: Callable[..., Script], env: dict[str, str]
) -> None:
    s = script(PREAMBLE + "run.log({'x': 1.0})\nprint('LOGGED', flush=True)\ntime.sleep(600)\n")
    path = s.wait_line("RUN ")
    s.wait_line("LOGGED")
    s.proc.kill()
    s.proc.wait()
    with tracklog.Api() as api:
        wait_for(lambda: _state(api, path) == "crashed", 30, "the run to be crashed")


def test_a_run_without_heartbeats_is_crashed_after_the_timeout_and_running_again_when_they_resume(
    script: Callable[..., Script], env: dict[str, str], store: Callable[..., StoreProcess], home: Path
) -> None:
    server = store(heartbeat_timeout=2.0)
    server.start()
    s = script(
        PREAMBLE + "run.log({'x': 1.0})\nprint('LOGGED', flush=True)\ntime.sleep(600)\n",
        TRACKLOG_SERVER=server.address,
    )
    path = s.wait_line("RUN ")
    s.wait_line("LOGGED")
    with tracklog.Api(server.address) as api:
        wait_for(lambda: _state(api, path) == "running", 30, "the run to be running")
        # Freeze the daemon: no more heartbeats, and nothing can report the training process.
        pid = daemon_pid(home)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: _state(api, path) == "crashed", 30, "the heartbeat timeout to mark it crashed")
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: _state(api, path) == "running", 30, "heartbeats to bring it back to running")
        # Now both vanish for good: the store alone decides, after the timeout.
        os.kill(pid, signal.SIGKILL)
        s.proc.kill()
        s.proc.wait()
        wait_for(lambda: _state(api, path) == "crashed", 30, "the run to be crashed")


def test_nan_and_infinity_round_trip_through_the_store(
    script: Callable[..., Script], env: dict[str, str]
) -> None:
    s = script(
        PREAMBLE
        + "run.log({'v': float('nan')})\nrun.log({'v': float('inf')})\nrun.log({'v': -float('inf')})\n"
    )
    path = s.wait_line("RUN ")
    assert s.wait() == 0, s.err
    with tracklog.Api() as api:
        wait_for(lambda: _state(api, path) == "finished", 30, "the run to be finished")
        values = [r["v"] for r in api.run(path).history(pandas=False)]
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf]


def test_tracklog_runs_lists_the_run_in_a_table(script: Callable[..., Script], env: dict[str, str]) -> None:
    s = script(PREAMBLE + "run.log({'loss': 0.25})\n")
    path = s.wait_line("RUN ")
    assert s.wait() == 0, s.err
    with tracklog.Api() as api:
        wait_for(lambda: _state(api, path) == "finished", 30, "the run to be finished")
    entity, project, _ = path.split("/")
    out = subprocess.run(
        [sys.executable, "-m", "tracklog", "runs", f"{entity}/{project}"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert path in out.stdout
    assert "finished" in out.stdout
    assert "loss=0.25" in out.stdout


def test_tracklog_runs_right_after_a_first_run_on_a_new_machine_lists_it(
    script: Callable[..., Script], env: dict[str, str]
) -> None:
    # A fresh home: the daemon and the local store start with this run, as in ./scripts/demo.
    s = script(PREAMBLE + "run.log({'loss': 0.5})\n")
    path = s.wait_line("RUN ")
    assert s.wait() == 0, s.err
    entity, project, _ = path.split("/")
    out = subprocess.run(
        [sys.executable, "-m", "tracklog", "runs", f"{entity}/{project}"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert path in out.stdout
    assert "finished" in out.stdout
