"""Jupyter's display of runs: ``Run._repr_html_`` and ``ApiRun._repr_html_`` show a compact summary with
the run's URL, and escape every piece of user text."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracklog
from tests.e2e.conftest import stop_home_processes, wait_for
from tracklog import _notebook
from tracklog._api import ApiRun

HOSTILE = "<script>alert('x')</script> & \"quoted\""
ESCAPED = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;"


@pytest.fixture
def online_home(tmp_path: Path) -> Iterator[Path]:
    """This test's TRACKLOG_HOME with its daemon running; the daemon and its local store are stopped
    after the test."""
    home = Path(os.environ["TRACKLOG_HOME"])
    # Started by a child process, as a user's shell or an earlier script would: the SDK's own spawn
    # drops its Popen handle, which this process would report as a ResourceWarning (an error here).
    subprocess.run([sys.executable, "-m", "tracklog", "daemon", "start"], check=True, capture_output=True)
    yield home
    stop_home_processes(home)


@pytest.mark.slow
def test_a_run_and_its_api_run_show_their_url_and_an_escaped_name_in_html(online_home: Path) -> None:
    run = tracklog.init(project="notebook", name=HOSTILE, config={"lr": 0.1})
    run.log({"loss": 0.5, HOSTILE[:20]: 1.0})
    assert run.url.startswith("http://")
    html = run._repr_html_()
    assert f'href="{run.url}"' in html
    assert ESCAPED in html
    assert "<script>" not in html
    assert "running" in html
    assert run.path in html
    run.finish()
    assert "ended" in run._repr_html_()

    with tracklog.Api() as api:

        def finished() -> ApiRun | None:
            try:
                found = api.run(run.path)
            except tracklog.NotFoundError:  # the daemon has not synced it yet
                return None
            return found if found.state == "finished" and found.summary else None

        stored: ApiRun = wait_for(finished, 30, "the run to be stored")
        html = stored._repr_html_()
    assert stored.url.startswith("http://")
    assert f'href="{stored.url}"' in html
    assert ESCAPED in html
    assert "<script>" not in html
    assert "(finished)" in html
    assert "loss" in html
    assert "&lt;script&gt;alert(&#x27;x" in html  # the hostile summary key, escaped


def test_an_offline_run_shows_its_name_and_state_without_a_link() -> None:
    run = tracklog.init(project="notebook", name="plain", mode="offline")
    html = run._repr_html_()
    assert "<a " not in html
    assert "plain" in html
    assert "running, offline" in html
    run.finish()


def test_only_a_web_address_becomes_a_link_and_every_user_text_is_escaped() -> None:
    html = _notebook.run_html(
        kind="Run", name=HOSTILE, path="e/p/<id>", state="<b>", url="javascript:alert(1)",
        summary={HOSTILE: HOSTILE, "n": 0.123456789, "long": "x" * 500},
    )  # fmt: skip
    assert "<a " not in html
    assert "javascript:alert(1)" not in html.replace("&", "")  # shown nowhere, not even as text
    for raw in ("<script>", "<id>", "<b>"):
        assert raw not in html
    assert html.count(ESCAPED) == 3  # the name, the summary key and its value
    assert "0.123457" in html
    assert "x" * 100 not in html  # long values are cut


def test_showing_a_run_in_html_imports_nothing_new() -> None:
    code = (
        "import sys, tracklog\n"
        "run = tracklog.init(project='p', mode='disabled')\n"
        "before = set(sys.modules)\n"
        "run._repr_html_()\n"
        "print(sorted(set(sys.modules) - before - {'tracklog._notebook'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
