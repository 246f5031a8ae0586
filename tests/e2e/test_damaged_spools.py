"""`tracklog sync` of a damaged offline spool: one flipped byte costs exactly its frame, the rest is
stored, the loss is printed (file, frames, rows), recorded on the run, shown by `tracklog runs`, and
the exit status says so. The spool on disk is left as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import StoreProcess, wait_for
from tracklog._history import BatchBuilder
from tracklog._spool import HEADER, MAGIC, SpoolWriter, frames
from tracklog.v1 import records_pb2

pytestmark = pytest.mark.slow

FRAMES, ROWS = 50, 1000


def _tracklog(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracklog", *args], env=env, capture_output=True, text=True, check=False
    )


def offline_spool(tmp_path: Path) -> Path:
    """An offline run's spool, as the SDK writes it: RunStart, 50 history frames of 1,000 rows, Finish."""
    run_dir = tmp_path / "tracklog" / "offline-run-20261202_000000-dmg1"
    run_dir.mkdir(parents=True)
    ref = records_pb2.RunRef(entity="me", project="damage", id="dmg1")
    start = records_pb2.RunStart(ref=ref, name="flipped-byte-1", start_time=time.time(), offline=True)
    writer = SpoolWriter(run_dir / "run-dmg1.tlog")
    writer.append([(1, records_pb2.Record(start=start).SerializeToString())])
    for frame in range(FRAMES):
        builder = BatchBuilder()
        for step in range(frame * ROWS, (frame + 1) * ROWS):
            builder.add(step, 1.7e9 + step, {"loss": 1.0 / (step + 1)})
        writer.append([(frame + 2, records_pb2.Record(history=builder.encode()).SerializeToString())])
    finish = records_pb2.Finish(state=records_pb2.RUN_STATE_FINISHED, end_time=time.time())
    writer.append([(FRAMES + 2, records_pb2.Record(finish=finish).SerializeToString())])
    writer.close()
    return run_dir / "run-dmg1.tlog"


def flip_in_frame(spool: Path, seq: int, where: int) -> bytes:
    ends = {0: len(MAGIC)} | {frame.seq: frame.end for frame in frames(spool)}
    data = bytearray(spool.read_bytes())
    data[ends[seq - 1] + where] ^= 0x10
    spool.write_bytes(bytes(data))
    return bytes(data)


def test_one_flipped_byte_costs_its_frame_of_1000_rows_and_sync_reports_it_and_fails(
    store: Callable[..., StoreProcess], env: dict[str, str], tmp_path: Path
) -> None:
    spool = offline_spool(tmp_path)
    damaged = flip_in_frame(spool, 26, HEADER.size + 4000)  # the 25th history frame's payload
    server = store()
    server.start()
    sync_env = {**env, "TRACKLOG_SERVER": server.address}

    first = _tracklog(sync_env, "sync", str(spool.parent))

    assert first.returncode == 1, first.stderr
    assert "synced" in first.stdout
    assert "run-dmg1.tlog: frame 26 lost (1000 history rows)" in first.stderr
    assert "1 damaged frame (1000 history rows) could not be read" in first.stderr
    assert spool.read_bytes() == damaged  # nothing cut, nothing repaired
    with tracklog.Api(server.address) as api:
        run = api.run("me/damage/dmg1")
        assert (run.state, run.history_rows, run.rows_lost) == ("finished", 49_000, 1_000)
        assert len(run.problems) == 1
        assert run.problems[0].startswith(
            "frame 26 of run-dmg1.tlog lost to damage on disk (1,000 history rows"
        )
        steps = [r["_step"] for r in run.scan_history(keys=["loss"])]
        assert steps == [*range(24_000), *range(25_000, 50_000)]

    listed = _tracklog(sync_env, "runs", "me/damage")
    assert listed.returncode == 0, listed.stderr
    assert "49000 (1000 lost)" in listed.stdout
    assert "me/damage/dmg1: frame 26 of run-dmg1.tlog lost to damage on disk" in listed.stdout

    again = _tracklog(sync_env, "sync", str(spool.parent))
    assert again.returncode == 1
    assert "already synced" in again.stdout
    assert "frame 26 lost (1000 history rows)" in again.stderr


def test_a_run_whose_start_record_is_damaged_is_stored_under_its_file_name_with_every_later_row(
    store: Callable[..., StoreProcess], env: dict[str, str], tmp_path: Path
) -> None:
    spool = offline_spool(tmp_path)
    damaged = flip_in_frame(spool, 1, HEADER.size + 2)
    server = store()
    server.start()
    sync_env = {
        **env,
        "TRACKLOG_SERVER": server.address,
        "TRACKLOG_ENTITY": "me",
        "TRACKLOG_PROJECT": "damage",
    }

    result = _tracklog(sync_env, "sync", str(spool.parent))

    assert result.returncode == 1, result.stderr
    assert (
        "frame 1, the run's start record, is damaged: the run was stored as me/damage/dmg1" in result.stderr
    )
    assert "run-dmg1.tlog: frame 1 lost" in result.stderr
    assert spool.read_bytes() == damaged
    with tracklog.Api(server.address) as api:
        run = api.run("me/damage/dmg1")
        assert (run.state, run.history_rows) == ("finished", FRAMES * ROWS)
        assert run.problems[0].startswith("frame 1 of run-dmg1.tlog lost to damage on disk")
        assert [r["_step"] for r in run.scan_history(keys=["loss"])] == list(range(FRAMES * ROWS))


def leave_pending(home: Path, spool: Path, server: str) -> None:
    """A run left pending (not yet synced) for the next daemon, whose training process is gone."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    pending = home / "pending"
    pending.mkdir(parents=True, mode=0o700)
    entry = {"ref": "me/damage/dmg1", "run_dir": str(spool.parent), "spool": str(spool), "server": server}
    (pending / "me+damage+dmg1.json").write_text(json.dumps({**entry, "pid": int(gone.stdout)}))


def test_a_daemon_syncing_an_online_spool_with_a_flipped_byte_stores_the_rest_and_records_the_loss(
    store: Callable[..., StoreProcess], env: dict[str, str], tmp_path: Path, home: Path
) -> None:
    # A finished run left pending (not yet synced) with a damaged spool, for the next daemon.
    spool = offline_spool(tmp_path)
    damaged = flip_in_frame(spool, 26, HEADER.size + 4000)
    server = store()
    server.start()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    pending = home / "pending"
    pending.mkdir(parents=True, mode=0o700)
    entry = {
        "ref": "me/damage/dmg1",
        "run_dir": str(spool.parent),
        "spool": str(spool),
        "server": server.address,
    }
    (pending / "me+damage+dmg1.json").write_text(json.dumps({**entry, "pid": int(gone.stdout)}))

    started = _tracklog(env, "daemon", "start")
    assert started.returncode == 0, started.stderr

    with tracklog.Api(server.address) as api:
        wait_for(
            lambda: api.runs("me/damage") and api.run("me/damage/dmg1").state == "finished", 60, "the run"
        )
        run = api.run("me/damage/dmg1")
        assert (run.history_rows, run.rows_lost) == (49_000, 1_000)
        assert run.problems[0].startswith(
            "frame 26 of run-dmg1.tlog lost to damage on disk (1,000 history rows"
        )
    assert spool.read_bytes() == damaged  # the damage stays on disk
    log = (home / "daemon.log").read_text()
    assert f"damaged spool {spool}: run-dmg1.tlog: frame 26 lost (1000 history rows)" in log


def test_a_daemon_stores_a_run_whose_start_record_is_damaged_with_every_later_row_and_the_loss(
    store: Callable[..., StoreProcess], env: dict[str, str], tmp_path: Path, home: Path
) -> None:
    spool = offline_spool(tmp_path)
    damaged = flip_in_frame(spool, 1, HEADER.size + 2)
    server = store()
    server.start()
    leave_pending(home, spool, server.address)

    assert _tracklog(env, "daemon", "start").returncode == 0

    with tracklog.Api(server.address) as api:
        wait_for(
            lambda: api.runs("me/damage") and api.run("me/damage/dmg1").state == "finished", 60, "the run"
        )
        run = api.run("me/damage/dmg1")
        assert run.history_rows == FRAMES * ROWS
        assert run.problems[0].startswith("frame 1 of run-dmg1.tlog lost to damage on disk")
    assert spool.read_bytes() == damaged
    assert "damaged spool" in (home / "daemon.log").read_text()


def test_a_finished_offline_run_whose_spool_was_cut_mid_frame_reports_the_loss_and_sync_fails(
    store: Callable[..., StoreProcess], env: dict[str, str], tmp_path: Path
) -> None:
    spool = offline_spool(tmp_path)
    ends = {frame.seq: frame.end for frame in frames(spool)}
    os.truncate(spool, ends[39] + HEADER.size + 100)  # frame 40 (the 39th history frame) cut short
    server = store()
    server.start()
    sync_env = {**env, "TRACKLOG_SERVER": server.address}

    first = _tracklog(sync_env, "sync", str(spool.parent))

    assert first.returncode == 1, first.stderr
    assert "run-dmg1.tlog: frame 40 and any after it lost (at least 1000 history rows)" in first.stderr
    with tracklog.Api(server.address) as api:
        run = api.run("me/damage/dmg1")
        assert (run.history_rows, run.rows_lost) == (38_000, 1_000)
        assert run.problems[0].startswith(
            "frame 40 of run-dmg1.tlog lost to damage on disk (at least 1,000 history rows"
        )
    listed = _tracklog(sync_env, "runs", "me/damage")
    assert "38000 (1000 lost)" in listed.stdout
    again = _tracklog(sync_env, "sync", str(spool.parent))
    assert again.returncode == 1
    assert "already synced" in again.stdout
    assert "frame 40 and any after it lost (at least 1000 history rows)" in again.stderr
