"""Run identity end to end: real training processes in different run folders, the real daemon and
its local store. A reused id is refused at init() naming resume=; resume continues the store's run
from another run folder (its steps go on); a second live writer is refused; no row is lost."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import Script, wait_for

pytestmark = pytest.mark.slow

LOG_ROWS = """
import sys, tracklog
resume = sys.argv[1] if len(sys.argv) > 1 else None
part = int(sys.argv[2]) if len(sys.argv) > 2 else 0
run = tracklog.init(project="ids", id="shared", resume=resume, config={"part": part})
print("RUN", run.path, flush=True)
for i in range(5):
    run.log({"loss": float(i)})
run.finish()
"""

LIVE = """
import time, tracklog
run = tracklog.init(project="ids", id="live-one")
print("RUN", run.path, flush=True)
i = 0
while True:
    run.log({"i": float(i)})
    if i == 20:
        print("LOOPING", flush=True)
    i += 1
    time.sleep(0.01)
"""

SECOND_LIVE = """
import tracklog
try:
    tracklog.init(project="ids", id="live-one", resume="allow")
except tracklog.UsageError as exc:
    print("REFUSED", exc, flush=True)
"""


def _argv(code: str, *args: str) -> str:
    return f"import sys; sys.argv = ['train', {', '.join(repr(a) for a in args)}]\n" + code


def _rows(api: tracklog.Api, path: str) -> int:
    try:
        return api.run(path).history_rows
    except tracklog.NotFoundError:  # its RunStart has not reached the store yet
        return 0


def _finished(api: tracklog.Api, path: str) -> bool:
    try:
        return api.run(path).state == "finished"
    except tracklog.NotFoundError:
        return False


def test_a_reused_id_from_another_run_folder_is_refused_at_init_naming_resume(
    script: Callable[..., Script], tmp_path: Path
) -> None:
    first = script(LOG_ROWS)
    path = first.wait_line("RUN ")
    assert first.wait() == 0, first.err
    with tracklog.Api() as api:
        wait_for(lambda: _finished(api, path), 30, "the first run to be stored")
        second = script(LOG_ROWS, TRACKLOG_DIR=str(tmp_path / "elsewhere"))
        assert second.wait() == 1
        assert "already exists" in second.err
        assert "resume='allow'" in second.err
        run = api.run(path)
        assert run.state == "finished"
        assert [row["loss"] for row in run.history()] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_resume_from_another_run_folder_continues_the_steps_and_keeps_every_row(
    script: Callable[..., Script], tmp_path: Path
) -> None:
    first = script(_argv(LOG_ROWS, "", "1"))
    path = first.wait_line("RUN ")
    assert first.wait() == 0, first.err
    with tracklog.Api() as api:
        wait_for(lambda: _finished(api, path), 30, "the first run to be stored")
        name = api.run(path).name
        second = script(_argv(LOG_ROWS, "allow", "2"), TRACKLOG_DIR=str(tmp_path / "other-machine"))
        assert second.wait_line("RUN ") == path
        assert second.wait() == 0, second.err
        wait_for(lambda: _finished(api, path) and api.run(path).history_rows == 10, 30, "the resumed rows")
        run = api.run(path)
        rows = run.history()
        assert [row["_step"] for row in rows] == list(range(10))
        assert [row["loss"] for row in rows] == [float(i % 5) for i in range(10)]
        assert run.config["part"] == 2
        assert run.name == name


def test_a_second_live_process_with_the_same_id_is_refused_while_the_first_runs(
    script: Callable[..., Script], tmp_path: Path
) -> None:
    first = script(LIVE)
    path = first.wait_line("RUN ")
    first.wait_line("LOOPING")
    with tracklog.Api() as api:
        wait_for(lambda: _rows(api, path) > 0, 30, "the first run's rows in the store")
        second = script(SECOND_LIVE, TRACKLOG_DIR=str(tmp_path / "elsewhere"))
        refused = second.wait_line("REFUSED ")
        assert "still running in another process" in refused
        assert second.wait() == 0
        first.proc.terminate()
        assert first.wait() != 0
        wait_for(lambda: api.run(path).state == "killed", 30, "the first run to end killed")
        rows = api.run(path).history(keys=["i"])
        assert [row["i"] for row in rows] == [float(i) for i in range(len(rows))]
