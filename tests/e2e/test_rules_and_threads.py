"""What log() accepts the store keeps, what it refuses costs nothing else, and rows logged from many
threads all arrive: real training processes, the real daemon, the local store server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import tracklog
from tests.e2e.conftest import Script, wait_for

pytestmark = pytest.mark.slow


def _finished(api: tracklog.Api, path: str) -> tracklog.ApiRun | None:
    try:
        run = api.run(path)
    except tracklog.NotFoundError:
        return None
    return run if run.state == "finished" else None


def test_each_input_the_issue_names_is_refused_at_log_and_the_run_keeps_its_other_rows(
    script: Callable[..., Script],
) -> None:
    s = script(
        r"""
        import tracklog
        run = tracklog.init(project="rules", name="rules")
        print("RUN", run.path, flush=True)
        bad = [
            ({"": 1.0}, {}), ({"k" * 2000: 1.0}, {}), ({"_step": 1.0}, {}), ({"_timestamp": 1.0}, {}),
            ({"_runtime": 1.0}, {}), ({"lo\ud800ss": 1.0}, {}), ({"lo\x00ss": 1.0}, {}),
            ({"x": 1.0}, {"step": 2**63}),
        ]
        refused = []
        for i in range(40):
            run.log({"loss": float(i), "note": f"row {i}"})
            data, kwargs = bad[i % len(bad)]
            try:
                run.log({"loss": -1.0, **data}, **kwargs)  # a known key beside the bad one
            except (TypeError, ValueError) as exc:
                refused.append(type(exc).__name__)
        for name, value in (("name", "a\x00b"), ("notes", "\udc80")):
            try:
                setattr(run, name, value)
            except ValueError:
                refused.append("ValueError")  # tracklog.UsageError is one
        run.finish()
        print("REFUSED", " ".join(refused), flush=True)
        """
    )
    path = s.wait_line("RUN ")
    refused = s.wait_line("REFUSED ").split()
    assert s.wait() == 0, s.err
    assert refused == ["ValueError"] * 42
    with tracklog.Api() as api:
        run = wait_for(lambda: _finished(api, path), 60, "the finished run in the store")
        assert (run.name, run.history_rows, run.rows_lost, run.problems) == ("rules", 40, 0, [])
        rows = list(run.scan_history())
        assert [(r["_step"], r["loss"], r["note"]) for r in rows] == [
            (i, float(i), f"row {i}") for i in range(40)
        ]


THREADED_RUNS = """
import sys, threading, tracklog
sys.setswitchinterval(1e-5)  # threads switch often, so that an unguarded step shows within a run
for trial in range({runs}):
    run = tracklog.init(project="threads")
    start = threading.Barrier({threads})

    def work(t):
        start.wait()
        for i in range({rows}):
            run.log({{"t": t, "i": i, "x": i * 0.5}})

    threads = [threading.Thread(target=work, args=(t,)) for t in range({threads})]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    run.finish()
    print("RUN", run.path, flush=True)
print("DONE", flush=True)
"""


def test_rows_logged_from_eight_threads_all_reach_the_store_at_ascending_steps(
    script: Callable[..., Script],
) -> None:
    runs, threads, rows = 2, 8, 10_000
    s = script(THREADED_RUNS.format(runs=runs, threads=threads, rows=rows))
    paths = [s.wait_line("RUN ", timeout=180) for _ in range(runs)]
    s.wait_line("DONE")
    assert s.wait() == 0, s.err
    with tracklog.Api() as api:
        for path in paths:
            run = wait_for(lambda p=path: _finished(api, p), 120, f"run {path} finished in the store")
            assert (run.history_rows, run.rows_lost, run.problems) == (threads * rows, 0, [])
            stored = list(run.scan_history(keys=["t", "i"]))
            assert [r["_step"] for r in stored] == list(range(threads * rows))
            for t in range(threads):  # each thread's rows, in the order it logged them
                assert [r["i"] for r in stored if r["t"] == t] == list(range(rows))
