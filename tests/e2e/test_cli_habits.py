"""The commands wandb users reach for: `tracklog offline/online/disabled/status`, `sync` with no
argument (and --dry-run, --id, -p/-e), `login` that checks the server, `logout`, `--version`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import StoreProcess, free_port
from tracklog._cli import main as cli_main


def _offline_run(**kwargs: object) -> tracklog.Run:
    run = tracklog.init(project="p", mode="offline", **kwargs)  # type: ignore[arg-type]
    run.log({"loss": 0.5})
    run.log({"loss": 0.25})
    run.finish()
    return run


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli_main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"tracklog {tracklog.__version__}"


def test_offline_online_and_disabled_set_the_mode_init_uses_and_status_shows_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert cli_main(["status"]) == 0
    assert "mode:    online (default)" in capsys.readouterr().out
    assert cli_main(["offline"]) == 0
    assert "tracklog mode: offline" in capsys.readouterr().out
    assert cli_main(["status"]) == 0
    assert "mode:    offline (settings.json)" in capsys.readouterr().out
    run = tracklog.init(project="p")
    run.finish()
    assert (run.mode, Path(run.dir).name.startswith("offline-run-")) == ("offline", True)
    assert tracklog.init(project="p", mode="disabled").mode == "disabled"  # init's argument wins
    tracklog.finish()
    assert cli_main(["disabled"]) == 0
    assert tracklog.init(project="p").mode == "disabled"
    tracklog.finish()
    monkeypatch.setenv("TRACKLOG_MODE", "offline")  # the environment wins over the saved mode
    assert cli_main(["status"]) == 0
    assert "mode:    offline (TRACKLOG_MODE)" in capsys.readouterr().out
    monkeypatch.delenv("TRACKLOG_MODE")
    assert cli_main(["online"]) == 0
    settings = json.loads((Path(os.environ["TRACKLOG_HOME"]) / "settings.json").read_text())
    assert settings == {}
    assert os.stat(Path(os.environ["TRACKLOG_HOME"]) / "settings.json").st_mode & 0o777 == 0o600


def test_sync_with_no_argument_sends_every_unsynced_run_and_its_options_pick_and_redirect(
    store: Callable[..., StoreProcess], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = store()
    server.start()
    monkeypatch.setenv("TRACKLOG_SERVER", server.address)
    first, second, third = _offline_run(id="one"), _offline_run(id="two"), _offline_run(id="three")
    capsys.readouterr()

    assert cli_main(["sync", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert all(f"-{run.id} (" in listed for run in (first, second, third))
    with tracklog.Api(server.address) as api:
        assert api.runs(f"{first.entity}/p") == []  # a dry run sends nothing

    assert cli_main(["sync", "--id", "one"]) == 0
    assert cli_main(["sync", "--id", "two", "-p", "elsewhere", "-e", "team"]) == 0
    out = capsys.readouterr()
    assert "syncing as team/elsewhere/two" in out.err
    assert cli_main(["sync"]) == 0  # what is left: three
    assert "three" in capsys.readouterr().out
    assert cli_main(["sync"]) == 0
    assert capsys.readouterr().out.strip() == "nothing to sync"

    with tracklog.Api(server.address) as api:
        assert sorted(r.id for r in api.runs(f"{first.entity}/p")) == ["one", "three"]
        moved = api.run("team/elsewhere/two")
        assert (moved.state, moved.history_rows, moved.summary["loss"]) == ("finished", 2, 0.25)


def test_a_mode_that_cannot_be_saved_is_a_clear_error_and_leaves_nothing_behind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = Path(os.environ["TRACKLOG_HOME"])
    (home / "settings.json").mkdir(parents=True)  # in the way: the file cannot replace it
    assert cli_main(["offline"]) == 1
    assert "settings are unchanged" in capsys.readouterr().err
    assert sorted(p.name for p in home.iterdir()) == ["settings.json"]  # no temporary file left
    assert cli_main(["status"]) == 0  # what init() reads: past it, to the default
    assert "mode:    online (default)" in capsys.readouterr().out


def test_login_refuses_a_server_that_does_not_answer_and_saves_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = f"127.0.0.1:{free_port()}"
    assert cli_main(["login", "--server", address, "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert f"no tracklog store server answers at {address}" in err
    assert "nothing was saved" in err
    assert not (Path(os.environ["TRACKLOG_HOME"]) / "settings.json").exists()


def test_login_checks_and_remembers_a_server_and_logout_returns_to_the_local_store(
    store: Callable[..., StoreProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    server = store()
    server.start()
    assert cli_main(["offline"]) == 0
    assert cli_main(["login", "--server", server.address]) == 0
    assert f"tracklog will use the store server at {server.address}, version" in capsys.readouterr().out
    assert cli_main(["status"]) == 0
    status = capsys.readouterr().out
    assert f"server:  {server.address} (tracklog login)" in status
    assert "mode:    offline (settings.json)" in status  # login keeps the saved mode
    with tracklog.Api() as api:
        assert api.server == server.address
    assert cli_main(["logout"]) == 0
    assert f"tracklog no longer uses {server.address}" in capsys.readouterr().out
    assert cli_main(["status"]) == 0
    status = capsys.readouterr().out
    assert "server:  the local store in" in status
    assert "mode:    offline (settings.json)" in status
