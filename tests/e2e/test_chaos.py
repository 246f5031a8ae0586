"""kill -9 at random points: whatever the daemon acked is stored exactly once.

A training process logs steadily while the test SIGKILLs, at seeded random times, the daemon (the SDK
starts a new one and resends), the store server (restarted at once), and in some trials the training
process itself. When everything has settled, the store must hold exactly the rows of the run's spool
(every row the daemon acked), each step once, as one unbroken prefix of what the script logged; a
training process that finished has all of its rows stored and the run `finished`, one that was killed
ends `crashed`.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import Script, StoreProcess, daemon_pid, wait_for
from tracklog import _history, _spool
from tracklog.v1 import records_pb2

pytestmark = pytest.mark.slow

ROWS = 40_000
SEEDS = [11, 23]


def _spool_steps(run_dir: Path, run_id: str) -> list[int]:
    """Every history step the run's spool holds, in order: what the daemon acked."""
    steps: list[int] = []
    for frame in _spool.frames(run_dir / f"run-{run_id}.tlog"):
        record = records_pb2.Record.FromString(frame.payload)
        if record.WhichOneof("kind") == "history":
            batch = records_pb2.HistoryBatch.FromString(record.history)
            steps.extend(_history.unpack_int64(batch.steps))
    return steps


def _state(api: tracklog.Api, path: str) -> str:
    try:
        return api.run(path).state
    except tracklog.NotFoundError:
        return ""


@pytest.mark.parametrize("seed", SEEDS)
def test_rows_acked_through_random_sigkills_of_every_process_are_stored_exactly_once(
    seed: int,
    script: Callable[..., Script],
    store: Callable[..., StoreProcess],
    home: Path,
    tmp_path: Path,
) -> None:
    rng = random.Random(seed)
    kill_trainer = seed != SEEDS[0]  # the first trial lets the training process finish
    server = store()
    server.start()
    s = script(
        f"""
        import time, tracklog
        run = tracklog.init(project="chaos")
        print("RUN", run.path, run.dir, flush=True)
        for i in range({ROWS if not kill_trainer else 10**9}):  # a trainer to be killed logs until then
            run.log({{f"k{{j}}": float(i * 10 + j) for j in range(10)}})
            if i % 500 == 499:
                time.sleep(0.06)  # about 5 s of steady logging, so the kills land mid-run
        run.finish()
        print("DONE", flush=True)
        """,
        TRACKLOG_SERVER=server.address,
    )
    path, run_dir = s.wait_line("RUN ").split()
    start = time.monotonic()
    events = sorted(
        [(rng.uniform(0.3, 4.0), "daemon") for _ in range(2)]
        + [(rng.uniform(0.3, 4.0), "store")]
        + ([(rng.uniform(1.0, 4.0), "trainer")] if kill_trainer else [])
    )
    for at, victim in events:
        while time.monotonic() - start < at and s.proc.poll() is None:
            time.sleep(0.01)  # pacing the schedule, not synchronisation: any moment is a fair target
        if s.proc.poll() is not None:
            break
        if victim == "daemon":
            pid = daemon_pid(home)
            if pid:  # its info file may still name a daemon killed before (none is running then)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        elif victim == "store":
            server.stop(signal.SIGKILL)
            server.start()
        else:
            s.proc.kill()
    code = s.wait(timeout=180)
    assert (code != 0) == kill_trainer, s.err  # each trial ran the scenario it was meant to
    with tracklog.Api(server.address) as api:
        end = "finished" if code == 0 else "crashed"
        wait_for(lambda: _state(api, path) == end, 120, f"run {path} to end {end} (seed {seed})")
        acked = _spool_steps(Path(run_dir), path.rsplit("/", 1)[1])
        # Rows reach the store as the daemon syncs them; a crashed run's last rows may still be coming.
        wait_for(lambda: api.run(path).history_rows == len(acked), 60, f"every acked row (seed {seed})")
        stored = [row["_step"] for row in api.run(path).scan_history(keys=["k0"])]
        assert stored == acked == list(range(len(acked))), f"seed {seed}"
        if code == 0:
            assert len(stored) == ROWS
        assert api.run(path).rows_lost == 0
