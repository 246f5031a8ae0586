"""Stopping and deleting runs from the API: real training scripts, the real daemon, its local store."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import Script, wait_for
from tracklogd._config import DaemonConfig

pytestmark = pytest.mark.slow

LOOP = """
import time, tracklog
run = tracklog.init(project="stops", tags=["base"])
print("RUN", run.path, flush=True)
with run:
    i = 0
    while True:
        run.log({"i": float(i)})
        if i == 20:
            print("LOOPING", flush=True)
        if i == 40:
            run.tags = run.tags + ("from-run",)
        i += 1
        time.sleep(0.01)
"""


ONCE = """
import tracklog
with tracklog.init(project="stops", id="reserved") as run:
    print("RUN", run.path, flush=True)
    run.log({"x": 1.0})
"""


def _state(api: tracklog.Api, path: str) -> str | None:
    try:
        return api.run(path).state
    except tracklog.NotFoundError:  # its RunStart has not reached the store yet
        return None


# As a shell starts a background job (`python train.py &` in a script, nohup): SIGINT ignored, so
# Python installs no KeyboardInterrupt handler and the Ctrl+C way of stopping cannot work.
IGNORING_CTRL_C = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"


@pytest.mark.parametrize("prelude", ["", IGNORING_CTRL_C], ids=["foreground", "background-job"])
def test_stop_from_the_api_ends_a_live_run_killed_within_5_seconds_and_keeps_an_api_tag(
    script: Callable[..., Script], prelude: str
) -> None:
    # The default heartbeat interval, not the suite's quick one: the 5 s promise is about defaults.
    s = script(prelude + LOOP, TRACKLOG_HEARTBEAT_INTERVAL=str(DaemonConfig().heartbeat_interval))
    path = s.wait_line("RUN ")
    s.wait_line("LOOPING")
    with tracklog.Api() as api:
        wait_for(lambda: _state(api, path) == "running", 30, "the run to reach the store")
        run = api.run(path)
        run.tags.append("from-api")
        run.update()
        started = time.monotonic()
        run.stop()
        code = s.wait(timeout=30)
        took = time.monotonic() - started
        assert code != 0
        assert took < 5.0, f"the training process ended {took:.1f}s after the stop"
        wait_for(lambda: _state(api, path) == "killed", 30, "the run to be killed")
        final = api.run(path)
        assert set(final.tags) == {"base", "from-run", "from-api"}
        assert any("a stop was requested" in line for line in final.logs())
        with pytest.raises(tracklog.UsageError, match="is killed, not running"):
            final.stop()


def test_a_deleted_runs_id_is_refused_at_init_saying_it_was_deleted(
    script: Callable[..., Script], tmp_path: Path
) -> None:
    first = script(ONCE)
    path = first.wait_line("RUN ")
    assert first.wait() == 0, first.err
    with tracklog.Api() as api:
        wait_for(lambda: _state(api, path) == "finished", 30, "the first run to be finished")
        api.run(path).delete()
        # Another run folder (so the SDK's own check of run folders does not refuse the id first).
        elsewhere = tmp_path / "elsewhere"
        second = script(ONCE, TRACKLOG_DIR=str(elsewhere))
        assert second.wait() == 1
        assert "the id 'reserved' belonged to a deleted run" in second.err
        assert not any(line.startswith("RUN ") for line in second.lines)
        assert not (elsewhere / "tracklog").exists()  # refused before anything was written
        with pytest.raises(tracklog.NotFoundError, match=f"run {path} was deleted"):
            api.run(path)
