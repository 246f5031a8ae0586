"""A full disk under the run folder: the training process is told, keeps its rows, and every one of them
arrives once space returns, without a restart."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import Script, StoreProcess, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs (a real full disk) needs root"),
]

ROWS = 150_000


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs: a real filesystem that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Writes a file until the disk refuses another byte; returns it (delete it to free the space)."""
    filler = disk / "filler"
    block = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(block[:size])
    with pytest.raises(OSError, match="No space left on device") as full:
        (disk / "probe").write_bytes(b"x" * 4096)
    assert full.value.errno == errno.ENOSPC
    return filler


def test_150000_rows_logged_through_a_disk_full_window_are_all_stored_and_the_user_is_told(
    script: Callable[..., Script], store: Callable[..., StoreProcess], small_disk: Path, tmp_path: Path
) -> None:
    server = store()
    server.start()
    s = script(
        f"""
        import os, time, tracklog
        run = tracklog.init(project="disk-full")
        print("RUN", run.path, flush=True)
        while not os.path.exists({str(tmp_path / "go")!r}):
            time.sleep(0.01)
        for i in range({ROWS}):
            run.log({{f"k{{j}}": float(i * 10 + j) for j in range(10)}})
            if i % 5_000 == 4_999:
                time.sleep(0.1)  # about 3 s of logging, most of it while the disk is full
            if i == 100_000:
                print("FREE-THE-DISK", flush=True)
        run.finish()
        print("DONE", flush=True)
        """,
        TRACKLOG_SERVER=server.address,
        TRACKLOG_DIR=str(small_disk),
    )
    path = s.wait_line("RUN ")
    filler = _fill(small_disk)
    (tmp_path / "go").touch()
    s.wait_line("FREE-THE-DISK", timeout=120)
    filler.unlink()
    s.wait_line("DONE", timeout=180)
    assert s.wait() == 0, s.err
    # Told once, clearly, on its terminal (stderr), and told when writing works again.
    assert s.err.count("the tracklog daemon cannot write this run's data") == 1, s.err
    assert "No space left on device" in s.err
    assert s.err.count("the tracklog daemon writes this run's data again") == 1, s.err
    with tracklog.Api(server.address) as api:
        # The Finish may reach the store in a later push than the last rows (a busy store answers
        # a push "try again shortly"), so both are waited for.
        wait_for(
            lambda: (r := api.run(path)).history_rows == ROWS and r.state == "finished",
            120,
            "every row in the store and the run finished",
        )
        run = api.run(path)
        assert run.rows_lost == 0
        steps = [row["_step"] for row in run.scan_history(keys=["k0"])]
        assert steps == list(range(ROWS))
