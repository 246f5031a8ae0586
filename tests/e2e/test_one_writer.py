"""A run has one writer at a time: a second live training process that starts a run with the id of a
run another live process writes (``resume="allow"`` twice at once) is refused at ``init()``, naming
the process that writes it, instead of numbering its frames over the first one's and losing rows.
Online, the daemon refuses its stream; offline, the spool's lock refuses it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import Script, StoreProcess, wait_for
from tracklog.testing import history_rows, read_records

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_a_second_live_process_resuming_a_run_another_one_writes_is_refused_and_no_row_is_lost(
    mode: str, script: Callable[..., Script], store: Callable[..., StoreProcess], tmp_path: Path
) -> None:
    server = store()
    server.start()
    go = tmp_path / "go"
    first = script(
        f"""
        import os, time, tracklog
        run = tracklog.init(entity="me", project="dup", id="dup1", resume="allow", mode={mode!r})
        for i in range(100):
            run.log({{"x": float(i)}})
        print("READY", run.dir, flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
            time.sleep(0.01)  # waiting for the second process to try
        for i in range(100, 200):
            run.log({{"x": float(i)}})
        run.finish()
        """,
        TRACKLOG_SERVER=server.address,
    )
    run_dir = first.wait_line("READY ")

    second = script(
        f"""
        import tracklog
        try:
            tracklog.init(entity="me", project="dup", id="dup1", resume="allow", mode={mode!r})
        except tracklog.UsageError as exc:
            print("REFUSED", exc, flush=True)
        """,
        TRACKLOG_SERVER=server.address,
    )
    refused = second.wait_line("REFUSED ")
    # Named by the daemon ("process N") or, online, by the store ("another process ... (pid N)").
    assert "process" in refused
    assert str(first.proc.pid) in refused
    assert "one writer" in refused or "still running" in refused
    assert second.wait() == 0, second.err
    go.touch()
    assert first.wait() == 0, first.err

    assert [r["x"] for r in history_rows(read_records(run_dir))] == [float(i) for i in range(200)]
    if mode == "online":
        with tracklog.Api(server.address) as api:
            wait_for(lambda: _state(api, "me/dup/dup1") == "finished", 60, "the run to finish")
            assert api.run("me/dup/dup1").history_rows == 200


def _state(api: tracklog.Api, path: str) -> str:
    try:
        return api.run(path).state
    except tracklog.NotFoundError:
        return ""
