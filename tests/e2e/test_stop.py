"""Stopping a live run from the API: a real training script, the real daemon and its local store."""

from __future__ import annotations

import time
from collections.abc import Callable

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


def _state(api: tracklog.Api, path: str) -> str | None:
    try:
        return api.run(path).state
    except tracklog.NotFoundError:  # its RunStart has not reached the store yet
        return None


def test_stop_from_the_api_ends_a_live_run_killed_within_5_seconds_and_keeps_an_api_tag(
    script: Callable[..., Script],
) -> None:
    # The default heartbeat interval, not the suite's quick one: the 5 s promise is about defaults.
    s = script(LOOP, TRACKLOG_HEARTBEAT_INTERVAL=str(DaemonConfig().heartbeat_interval))
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
