"""Shared fixtures: an isolated TRACKLOG_HOME and working directory for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No test may touch the developer's ~/.tracklog, their server, or leave files in the checkout.
    for name in list(os.environ):
        if name.startswith("TRACKLOG_") and name not in (
            "TRACKLOG_TEST_POSTGRES_URL",
            "TRACKLOG_TEST_SKIP_POSTGRES",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRACKLOG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRACKLOG_SILENT", "true")
    monkeypatch.chdir(tmp_path)
