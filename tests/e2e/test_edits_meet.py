"""Edits from the API and from the training process meet in one result, and a run that just ended reads
back whole: a real training script, the real daemon, its local store."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import Script, StoreProcess, wait_for
from tracklog import _api_settle
from tracklog._refs import RunPath

pytestmark = pytest.mark.slow

# Logs until the test drops a file, changes its own tags and name, logs until a second file, sets its
# tags once more and ends. Waiting on the files is the script's loop, not the test's synchronisation.
EDITING = """
import os, time, tracklog
here = os.getcwd()
run = tracklog.init(project="edits", tags=["base"])
print("RUN", run.path, flush=True)
rows = 0

def log_until(name):
    global rows
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(here, name)):
        if time.monotonic() > deadline:
            raise SystemExit(f"no {name} within 60 s")
        run.log({"loss": 1.0 / (rows + 1)})
        rows += 1
        time.sleep(0.01)

with run:
    print("LOGGING", flush=True)
    log_until("go1")
    run.tags = run.tags + ("from-run",)
    run.name = "renamed-by-run"
    print("CHANGED", flush=True)
    log_until("go2")
    run.tags = ("final",)
    run.config["lr"] = 0.5
print("ROWS", rows, flush=True)
"""


def _tags(api: tracklog.Api, path: str) -> set[str] | None:
    try:
        return set(api.run(path).tags)
    except tracklog.NotFoundError:  # its RunStart has not reached the store yet
        return None


def test_a_tag_added_through_the_api_while_the_run_logs_survives_its_tag_changes_and_its_end(
    script: Callable[..., Script], tmp_path: Path
) -> None:
    s = script(EDITING)
    path = s.wait_line("RUN ")
    s.wait_line("LOGGING")
    with tracklog.Api() as api:
        wait_for(lambda: _tags(api, path) == {"base"}, 30, "the run to reach the store")
        run = api.run(path)
        run.tags.append("from-api")
        run.config["lr"] = 0.1
        run.update()
        (tmp_path / "go1").touch()
        s.wait_line("CHANGED")
        wait_for(lambda: _tags(api, path) == {"base", "from-api", "from-run"}, 30, "the run's own tag")
        assert api.run(path).name == "renamed-by-run"
        # The API's rename comes after the run's: it wins, and the run's next changes leave it.
        renamed = api.run(path)
        renamed.name = "renamed-by-api"
        renamed.update()
        (tmp_path / "go2").touch()
        rows = int(s.wait_line("ROWS "))
        assert s.wait() == 0, s.err
        # Read your own writes: no waiting here; run() lets the daemon finish sending the run first.
        final = api.run(path)
        assert final.state == "finished"
        assert final.tags == ["from-api", "final"]
        assert final.name == "renamed-by-api"
        assert final.config["lr"] == 0.5  # the run's later write of the key wins
        assert final.history_rows == rows
        assert len(list(final.scan_history(keys=["loss"]))) == rows
        assert final.metadata.get("python"), final.metadata  # the daemon's own records came too


ENDS_WHILE_THE_STORE_IS_DOWN = """
import os, time, tracklog
run = tracklog.init(project="ryw")
print("RUN", run.path, flush=True)
with run:
    for i in range(50):
        run.log({"x": float(i)})
    print("LOGGED", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists("go"):
        if time.monotonic() > deadline:
            raise SystemExit("no go within 60 s")
        time.sleep(0.01)
    for i in range(50, 500):
        run.log({"x": float(i)})
"""


def test_a_run_that_just_ended_reads_back_whole_once_the_daemon_has_sent_it(
    script: Callable[..., Script], store: Callable[..., StoreProcess], tmp_path: Path, home: Path
) -> None:
    server = store()
    server.start()
    s = script(ENDS_WHILE_THE_STORE_IS_DOWN, TRACKLOG_SERVER=server.address)
    path = s.wait_line("RUN ")
    s.wait_line("LOGGED")
    with tracklog.Api(server.address) as api:
        wait_for(lambda: _tags(api, path) is not None, 30, "the run to reach the store")
    server.stop(signal.SIGKILL)
    (tmp_path / "go").touch()
    assert s.wait() == 0, s.err  # finish() waits for local disk only: the store is down
    # While the store is down the daemon still holds the ended run: a bounded wait says so.
    ref = RunPath.parse(path)
    assert _api_settle.settling(home, ref, server.address) is True
    assert _api_settle.await_settled(home, ref, server.address, timeout=0.3) is False
    assert _api_settle.settling(home, ref, "127.0.0.1:1") is False  # headed for another store
    server.start()
    with tracklog.Api(server.address) as api:
        # The daemon sends the rest once its retry finds the store again; run() waits for it.
        final = api.run(path)
        assert final.state == "finished"
        assert final.history_rows == 500
