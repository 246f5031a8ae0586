"""A real small filesystem for full-disk tests: a tmpfs mounted on a test's directory (needs root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(directory: Path, size: str = "1m") -> Iterator[Path]:
    """Mounts a tmpfs of ``size`` on ``directory`` (created) for the block; unmounts it after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def fill(directory: Path, leave: int) -> Path:
    """Fills the filesystem of ``directory`` with a file until about ``leave`` bytes are free."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
        if free > leave:
            f.write(b"\0" * (free - leave))
    return filler
