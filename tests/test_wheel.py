"""`pip install` of a wheel built from this tree gives a working tracklog in a fresh venv: the SDK,
the daemon, the local store and the CLI, with nothing from the source tree on the path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import stop_home_processes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# What the wheel is built from: the distribution's own files (no run directories, caches or venvs).
SOURCES = ("pyproject.toml", "README.md", "client", "daemon", "server")


def _run(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=540, check=False, env=env, cwd=cwd)
    assert done.returncode == 0, f"{args[:4]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("TRACKLOG_")
    }
    env.update(extra)
    return env


def test_a_wheel_installs_in_a_fresh_venv_and_runs_a_run_through_its_daemon_and_local_store(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)],
        env=_clean_env(),
    )
    [wheel] = dist.glob("tracklog-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    # Its dependencies at the versions the suite uses (constraints.txt): a fresh machine resolves the same.
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(ROOT / "constraints.txt"), f"{wheel}[postgres]"],
        env=_clean_env(),
    )  # fmt: skip

    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = _clean_env(TRACKLOG_HOME=str(home), TRACKLOG_SILENT="true")
    script = textwrap.dedent(
        """
        import sys, time
        import tracklog, tracklogd, tracklog_server, psycopg
        for module in (tracklog, tracklogd, tracklog_server):
            assert module.__file__.startswith(sys.prefix), module.__file__  # the wheel's, not the tree's
        run = tracklog.init("me", "wheel", config={"lr": 0.1})
        for i in range(20):
            tracklog.log({"x": i / 2})
        run.finish()
        with tracklog.Api() as api:
            deadline = time.monotonic() + 60
            while api.run(run.path).state != "finished" and time.monotonic() < deadline:
                time.sleep(0.1)  # the daemon hands the finished run to the local store
            stored = api.run(run.path)
            print(stored.state, stored.config, [r["x"] for r in stored.history()][-1], stored.history_rows)
        """
    )
    try:
        done = _run([str(python), "-c", script], env=env, cwd=work)
        assert done.stdout.split("\n")[0] == "finished {'lr': 0.1} 9.5 20"
        listed = _run([str(venv / "bin" / "tracklog"), "runs", "me/wheel"], env=env, cwd=work)
        assert "me/wheel/" in listed.stdout
        assert "finished" in listed.stdout
        version = _run([str(venv / "bin" / "tracklog"), "--version"], env=env)
        assert version.stdout.strip() == "tracklog 0.1.0"
    finally:
        stop_home_processes(home)
