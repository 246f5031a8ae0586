"""Offline runs stay on disk until `tracklog sync` sends them; syncing twice adds nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import Script, StoreProcess
from tracklog._spool import SpoolWriter
from tracklog.testing import spool_of
from tracklogd._own import own_spool_path
from tracklogd._records import metadata_record, system_record
from tracklogd.testing import frames, make_ref

pytestmark = pytest.mark.slow


def _sync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracklog", "sync", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_offline_run_of_ten_thousand_rows_syncs_completely_and_a_second_sync_adds_nothing(
    script: Callable[..., Script], store: Callable[..., StoreProcess], env: dict[str, str], home: Path
) -> None:
    s = script(
        """
        import tracklog
        run = tracklog.init(project="offline", mode="offline", config={"seed": 7})
        print("RUN", run.path, flush=True)
        print("DIR", run.dir, flush=True)
        for i in range(10_000):
            run.log({"loss": 1.0 / (i + 1), "acc": i / 10_000})
        run.finish()
        """
    )
    path = s.wait_line("RUN ")
    run_dir = s.wait_line("DIR ")
    assert s.wait() == 0, s.err
    assert not home.exists() or not (home / "daemon.json").exists(), "offline mode must not start a daemon"
    server = store()
    server.start()
    sync_env = {**env, "TRACKLOG_SERVER": server.address}
    first = _sync(sync_env, run_dir)
    assert first.returncode == 0, first.stderr
    assert "synced" in first.stdout
    with tracklog.Api(server.address) as api:
        run = api.run(path)
        assert (run.state, run.history_rows, run.config) == ("finished", 10_000, {"seed": 7})
        assert [r["_step"] for r in run.scan_history(keys=["loss"])] == list(range(10_000))
        second = _sync(sync_env, run_dir)
        assert second.returncode == 0, second.stderr
        assert "already synced" in second.stdout
        assert api.run(path).history_rows == 10_000


def test_sync_all_finds_every_offline_run_and_a_torn_spool_syncs_up_to_its_last_good_frame(
    script: Callable[..., Script], store: Callable[..., StoreProcess], env: dict[str, str], tmp_path: Path
) -> None:
    paths = []
    for _ in range(2):
        s = script(
            """
            import tracklog
            run = tracklog.init(project="offline", mode="offline")
            print("RUN", run.path, flush=True)
            print("DIR", run.dir, flush=True)
            for i in range(1000):
                run.log({"x": float(i)})
                if i % 100 == 99:
                    run.summary["at"] = i  # a control record between history frames
            """
        )
        paths.append((s.wait_line("RUN "), s.wait_line("DIR ")))
        assert s.wait() == 0, s.err
    torn = spool_of(paths[1][1])
    size = torn.stat().st_size
    with open(torn, "r+b") as f:
        f.truncate(size - 7)  # cut inside the last frame (the Finish record)
    server = store()
    server.start()
    result = _sync({**env, "TRACKLOG_SERVER": server.address}, "--all")
    # The training process that wrote the torn spool is gone: its cut end is a loss, said and recorded.
    assert result.returncode == 1, result.stderr
    assert "and any after it lost" in result.stderr
    with tracklog.Api(server.address) as api:
        assert api.run(paths[0][0]).history_rows == 1000
        assert api.run(paths[0][0]).state == "finished"
        assert not api.run(paths[0][0]).problems
        cut = api.run(paths[1][0])
        assert cut.history_rows == 1000
        assert cut.state == "running"  # its Finish frame was torn off; the store never saw it end
        assert len(cut.problems) == 1
        assert "lost to damage on disk" in cut.problems[0]


def test_a_daemon_spool_left_in_a_run_dir_is_synced_after_the_runs_own_and_only_once(
    store: Callable[..., StoreProcess], env: dict[str, str], tmp_path: Path
) -> None:
    # A daemon that died for good leaves the run's two spools: `tracklog sync` sends both.
    ref = make_ref("left1")
    run_dir = tmp_path / "tracklog" / "run-20261202_060000-left1"
    run_dir.mkdir(parents=True)
    client = SpoolWriter(run_dir / "run-left1.tlog")
    client.append(frames(ref, 3, finished=True))
    client.close()
    times = [1_700_000_000.0 + i for i in range(5)]
    own_records = [system_record([(t, {"system/cpu": float(i)})]) for i, t in enumerate(times)]
    own_records.append(metadata_record({"host": "box", "python": "3.11"}))
    own = SpoolWriter(own_spool_path(run_dir, "left1"))
    own.append(enumerate(own_records, 1))
    own.close()
    server = store()
    server.start()
    sync_env = {**env, "TRACKLOG_SERVER": server.address}

    first = _sync(sync_env, str(run_dir))
    second = _sync(sync_env, str(run_dir))

    assert first.returncode == 0, first.stderr
    assert "daemon's records" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "daemon's records" not in second.stdout  # nothing left to send
    with tracklog.Api(server.address) as api:
        run = api.run("me/proj/left1")
        assert (run.state, run.history_rows) == ("finished", 3)
        rows = run.system_history()
        expected = [(t, float(i)) for i, t in enumerate(times)]
        assert [(r["_timestamp"], r["system/cpu"]) for r in rows] == expected
        assert run.metadata["host"] == "box"
