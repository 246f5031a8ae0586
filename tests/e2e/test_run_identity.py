"""Run identity end to end: real training processes in different run folders, the real daemon and
its local store. A reused id is refused at init() naming resume=; resume continues the store's run
from another run folder (its steps go on); a second live writer is refused; no row is lost."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
import tracklogd
from tests.e2e.conftest import Script, StoreProcess, wait_for
from tracklog import _home, _spool
from tracklog._cli import main as cli_main

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
        assert [row["loss"] for row in run.history(pandas=False)] == [0.0, 1.0, 2.0, 3.0, 4.0]


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
        rows = run.history(pandas=False)
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
        rows = api.run(path).history(keys=["i"], pandas=False)
        assert [row["i"] for row in rows] == [float(i) for i in range(len(rows))]


def test_a_reused_id_started_while_the_store_is_down_is_kept_and_reported_never_dropped(
    script: Callable[..., Script],
    store: Callable[..., StoreProcess],
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = store()
    server.start()
    first = script(LOG_ROWS, TRACKLOG_SERVER=server.address)
    path = first.wait_line("RUN ")
    assert first.wait() == 0, first.err
    with tracklog.Api(server.address) as api:
        wait_for(lambda: _finished(api, path), 30, "the first run to be stored")
    # ... with its daemon's records too: until then this daemon holds the id for the first run folder.
    wait_for(lambda: not getattr(tracklogd.status(home), "runs", True), 30, "the daemon to be done with it")
    server.stop()
    # The store cannot be asked: init() lets the run start and the daemon keeps its frames.
    elsewhere = tmp_path / "elsewhere"
    second = script(LOG_ROWS, TRACKLOG_SERVER=server.address, TRACKLOG_DIR=str(elsewhere))
    assert second.wait_line("RUN ") == path
    assert second.wait() == 0, second.err
    server.start()

    def refused() -> str:
        status = tracklogd.status(home)
        return next((r.refused for r in status.runs if r.refused), "") if status is not None else ""

    reason = wait_for(refused, 60, "the daemon to report the store's refusal")
    assert "resume='allow'" in reason
    log = _home.daemon_log_path(home).read_text()
    assert f"not syncing run {path} again" in log
    assert cli_main(["runs", "--server", server.address]) == 0
    assert cli_main(["runs"]) == 0  # the local daemon's kept runs, whatever the store
    err = capsys.readouterr().err
    assert f"{path}: kept in {elsewhere}" in err
    spool = next(elsewhere.glob("tracklog/run-*/run-shared.tlog"))
    assert len(list(_spool.frames(spool))) >= 3  # start, rows, finish: all kept
    code = cli_main(["sync", str(spool.parent), "--server", server.address])
    assert code == 1
    assert "resume='allow'" in capsys.readouterr().err
    with tracklog.Api(server.address) as api:  # the first run is untouched
        assert [row["loss"] for row in api.run(path).history(pandas=False)] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_the_same_run_folder_resumed_while_its_first_process_still_writes_is_refused_at_init(
    script: Callable[..., Script],
) -> None:
    first = script(LIVE)
    path = first.wait_line("RUN ")
    first.wait_line("LOOPING")
    second = script(SECOND_LIVE)  # same run folder, so the same writer token: the daemon tells
    refused = second.wait_line("REFUSED ")
    assert f"run {path} is still running in another process on this machine" in refused
    assert second.wait() == 0
    first.proc.terminate()
    assert first.wait() != 0
    with tracklog.Api() as api:
        wait_for(lambda: _rows(api, path) > 0 and api.run(path).state == "killed", 30, "the first run to end")
        rows = api.run(path).history(keys=["i"], pandas=False)
        assert [row["i"] for row in rows] == [float(i) for i in range(len(rows))]
