"""Small faults of the SDK, each with the behaviour a user can rely on: log() after finish() always
says the run has finished, the run's files are private, the daemon's Popen is not dropped, a key
given twice in one call is refused, and an overlong list is refused for its length."""

from __future__ import annotations

import gc
import json
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import stop_home_processes
from tracklog import _launch
from tracklog.testing import history_rows, read_records


def test_log_after_finish_with_keys_the_fast_path_knows_is_ignored_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tracklog.init(project="p", mode="offline")
    run.log({"loss": 1.0})
    run.log({"loss": 0.5})  # "loss" is known now: this call takes the fast path
    run.finish()

    run.log({"loss": 0.25})

    assert "log() after finish() is ignored" in capsys.readouterr().err
    assert [r["loss"] for r in history_rows(read_records(run.dir))] == [1.0, 0.5]


def test_the_runs_output_log_and_config_json_are_readable_by_their_user_only(tmp_path: Path) -> None:
    code = (
        "import tracklog\n"
        "run = tracklog.init(project='p', mode='offline', config={'lr': 0.1})\n"
        "print('a line for output.log')\n"
        "print('DIR', run.dir)\n"
        "run.finish()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLOG_")}
    env.update(TRACKLOG_DIR=str(tmp_path), TRACKLOG_HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    run_dir = Path(done.stdout.split("DIR ", 1)[1].splitlines()[0])

    for name in ("output.log", "config.json"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o600, name
    assert json.loads((run_dir / "config.json").read_text()) == {"lr": 0.1}
    assert "a line for output.log" in (run_dir / "output.log").read_text()


def test_spawning_the_daemon_keeps_its_process_so_no_resource_warning_is_raised(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _launch.ensure_daemon(home, timeout=30)
            gc.collect()
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    finally:
        stop_home_processes(home)


def test_a_key_given_both_flat_and_nested_in_one_call_is_refused_naming_it() -> None:
    run = tracklog.init(project="p", mode="offline")
    with pytest.raises(ValueError, match="key 'a/b' is given twice in one call"):
        run.log({"a/b": 1, "a": {"b": 2}})
    run.log({"a": {"b": 2}})
    run.finish()
    assert [r["a/b"] for r in history_rows(read_records(run.dir))] == [2]


def test_a_list_too_long_to_store_is_refused_for_its_length() -> None:
    run = tracklog.init(project="p", mode="offline")
    with pytest.raises(ValueError, match=r"key 'xs' is a list of 100000 items, \d+ characters as JSON"):
        run.log({"xs": [0.5] * 100_000})
    run.finish()
