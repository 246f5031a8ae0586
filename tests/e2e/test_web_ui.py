"""URLs that keep working: init() prints the project's and the run's URLs in wandb's shape; they answer
after the daemon has exited; `tracklog ui` shows, stops and serves the local store's web app on the
same port with the same token. Real training process, daemon, store server and CLI processes."""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

import tracklogd
from tests.e2e.conftest import Script, home_server_pids, wait_for

pytestmark = pytest.mark.slow


def browser() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def answers(opener: urllib.request.OpenerDirector, url: str) -> int:
    try:
        with opener.open(url, timeout=10) as page:
            return int(page.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except OSError:
        return 0


def stored_rows(opener: urllib.request.OpenerDirector, api: str) -> int:
    try:
        with opener.open(api, timeout=10) as answer:
            return int(json.loads(answer.read())["rows"])
    except urllib.error.HTTPError as exc:
        exc.close()
        return -1


def tracklog_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracklog", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_printed_urls_outlive_the_daemon_and_tracklog_ui_serves_them_again(
    script: Callable[..., Script], env: dict[str, str], home: Path
) -> None:
    s = script(
        """
        import tracklog
        run = tracklog.init(project="webui", name="kept-url")
        print("RUN", run.path, flush=True)
        for i in range(50):
            run.log({"loss": 1.0 / (i + 1)})
        run.finish()
        """
    )
    path = s.wait_line("RUN ")
    assert s.wait() == 0, s.err
    entity, project, run_id = path.split("/")
    (project_url,) = re.findall(r"View project at (\S+)", s.err)
    (run_url,) = re.findall(r"View run at (\S+)", s.err)
    token = (home / "http-token").read_text().strip()
    match = re.fullmatch(
        rf"(http://127\.0\.0\.1:(\d+))/{entity}/{project}/runs/{run_id}\?token={token}", run_url
    )
    assert match is not None, run_url
    base, port = match.group(1), int(match.group(2))
    assert project_url == f"{base}/{entity}/{project}?token={token}"
    api = f"{base}/api/v1/runs/{entity}/{project}/{run_id}"

    opener = browser()
    wait_for(lambda: answers(opener, run_url) == 200, 60, "the run's page")
    wait_for(lambda: stored_rows(opener, api) == 50, 60, "the run's rows in the store")

    # The daemon goes away (as it does when idle); the URLs keep answering, from the same server.
    (server_pid,) = home_server_pids(home)
    assert tracklogd.stop(home, timeout=30.0)
    assert tracklogd.status(home) is None
    assert home_server_pids(home) == [server_pid]
    opener = browser()
    assert answers(opener, run_url) == 200
    assert answers(opener, project_url) == 200
    with opener.open(api, timeout=10) as answer:
        run = json.loads(answer.read())
    assert (run["name"], run["state"], run["rows"]) == ("kept-url", "finished", 50)
    # wandb's short form redirects to the runs/ form.
    with opener.open(f"{base}/{entity}/{project}/{run_id}", timeout=10) as page:
        assert page.url == f"{base}/{entity}/{project}/runs/{run_id}"
    assert answers(browser(), api) == 403  # without the token: nothing

    # `tracklog ui` says where it is; another port is refused while it runs.
    shown = tracklog_cli(env, "ui")
    assert shown.returncode == 0, shown.stderr
    assert f"{base}/?token={token}" in shown.stdout
    other = tracklog_cli(env, "ui", "--port", str(port + 1 if port < 65535 else port - 1))
    assert other.returncode == 1
    assert f"already served on port {port}" in other.stderr

    # Stopped, the URLs stop answering; `tracklog ui` serves them again: same port, same token.
    stopped = tracklog_cli(env, "ui", "--stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped the local store server" in stopped.stdout
    wait_for(lambda: not home_server_pids(home), 30, "the server to stop")
    assert answers(browser(), run_url) == 0
    ui = subprocess.Popen(
        [sys.executable, "-m", "tracklog", "ui"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert ui.stdout is not None
        first = ui.stdout.readline()
        assert f"serving the web app of {home} at {base}/?token={token}" in first
        again = browser()
        wait_for(lambda: answers(again, run_url) == 200, 60, "the web app to answer again")
        with again.open(api, timeout=10) as answer:
            assert json.loads(answer.read())["name"] == "kept-url"
        assert home_server_pids(home) == [ui.pid]  # the ui process is the home's store server
        ui.send_signal(signal.SIGINT)  # Ctrl+C
        assert ui.wait(30) == 0
    finally:
        if ui.poll() is None:
            ui.kill()
        ui.communicate()
    assert tracklog_cli(env, "ui", "--stop").stdout.startswith("no local store server is running")
