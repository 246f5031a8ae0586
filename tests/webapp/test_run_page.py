"""The run page in a real browser: Overview fields, tags, notes and name edited in place, charts with a
zoom that fetches the exact points of its range, logs, files, and a live run followed, stopped (it
ends killed) and deleted."""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import wait_for
from tests.webapp.conftest import LRS, PROJECT, STEPS, WebStore

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
expect = sync_api.expect

pytestmark = pytest.mark.slow

LIVE = """
import time, tracklog
run = tracklog.init(project="webtest-live", name="live-one", config={"lr": 0.1})
print("RUN", run.path, flush=True)
with run:
    i = 0
    while True:
        run.log({"x": float(i)})
        if i % 50 == 0:
            print(f"tick {i}", flush=True)
        i += 1
        time.sleep(0.02)
"""


def _run_url(store: WebStore, path: str) -> str:
    entity, project, run_id = path.split("/")
    return f"{store.base}/{entity}/{project}/runs/{run_id}"


def _api_run(store: WebStore, path: str) -> dict[str, Any]:
    result: dict[str, Any] = store.get(f"/api/v1/runs/{path}")
    return result


def test_the_overview_shows_the_runs_fields_and_edits_tags_notes_and_name(
    web_store: WebStore, page: Any, shot: Callable[[Any, str], Any]
) -> None:
    path = web_store.run_paths[4]
    page.goto(f"{web_store.base}/local/{PROJECT}")
    page.get_by_role("link", name="run-4", exact=True).click()
    expect(page.get_by_test_id("overview")).to_be_visible()
    assert page.url == _run_url(web_store, path) + "#overview" or page.url == _run_url(web_store, path)
    overview = page.get_by_test_id("overview")
    for label in (
        "Author",
        "Command",
        "Description",
        "Runtime",
        "Tracked hours",
        "Git repository",
        "Host name",
    ):
        expect(overview.locator(f'tr[data-field="{label}"]')).to_have_count(1)
    expect(overview.locator('tr[data-field="Run path"]')).to_contain_text(path)
    expect(page.get_by_test_id("run-state")).to_have_text("finished")
    expect(page.get_by_test_id("config").locator("tr", has_text="lr")).to_contain_text(str(LRS[4]))
    assert "_tracklog" in _api_run(web_store, path)["config"]  # stored, as wandb stores _wandb ...
    expect(page.get_by_test_id("config")).not_to_contain_text("_tracklog")  # ... and not shown
    expect(page.get_by_test_id("summary").locator("tr", has_text="acc")).to_contain_text("0.9")

    page.get_by_test_id("tag-input").fill("best")
    page.get_by_test_id("tag-input").press("Enter")
    expect(page.get_by_test_id("tag").filter(has_text="best")).to_have_count(1)
    wait_for(lambda: "best" in _api_run(web_store, path)["tags"], 10, "the tag to be stored")
    page.get_by_label("remove tag seed").click()
    wait_for(lambda: "seed" not in _api_run(web_store, path)["tags"], 10, "the tag to be removed")

    page.get_by_test_id("notes").click()
    page.get_by_test_id("notes-input").fill("a <b>fine</b> run")
    page.get_by_test_id("notes-input").press("Control+Enter")
    expect(page.get_by_test_id("notes")).to_have_text("a <b>fine</b> run")  # as text, never as HTML
    assert _api_run(web_store, path)["notes"] == "a <b>fine</b> run"
    expect(page.get_by_test_id("config")).not_to_contain_text("_tracklog")  # nor after an edit

    page.get_by_test_id("run-name").click()
    page.get_by_test_id("run-name-input").fill("run-4-renamed")
    page.get_by_test_id("run-name-input").press("Enter")
    expect(page.get_by_test_id("run-name")).to_have_text("run-4-renamed")
    assert _api_run(web_store, path)["name"] == "run-4-renamed"
    shot(page, "overview")
    # The edits are the store's: a reload shows them.
    page.reload()
    expect(page.get_by_test_id("notes")).to_have_text("a <b>fine</b> run")


def test_the_charts_draw_each_metric_and_a_zoom_fetches_that_range(
    web_store: WebStore, page: Any, shot: Callable[[Any, str], Any]
) -> None:
    path = web_store.run_paths[2]
    page.goto(_run_url(web_store, path) + "#charts")
    charts = page.get_by_test_id("chart")
    expect(charts).to_have_count(2)
    expect(charts.nth(0)).to_have_attribute("data-points", str(STEPS))
    assert charts.nth(0).locator("canvas").count() == 1
    shot(page, "charts")
    over = charts.nth(0).locator(".u-over")
    box = over.bounding_box()
    assert box is not None
    with page.expect_request(lambda r: "/history" in r.url and "min=" in r.url and "max=" in r.url) as req:
        page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
    assert "x=_step" in req.value.url
    expect(page.get_by_test_id("zoom-range")).to_be_visible()
    # The zoomed range holds fewer steps than the whole run.
    wait_for(
        lambda: 0 < int(charts.nth(0).get_attribute("data-points") or 0) < STEPS, 10, "the zoomed points"
    )
    page.get_by_label("x axis").select_option("_runtime")
    expect(page.get_by_test_id("zoom-range")).to_have_count(0)
    expect(charts).to_have_count(2)
    page.get_by_role("tab", name="System").click()
    expect(page.get_by_test_id("system-charts")).to_be_visible()
    shot(page, "system")


def test_the_logs_tab_shows_searches_and_downloads_the_output(
    web_store: WebStore, page: Any, shot: Callable[[Any, str], Any]
) -> None:
    path = web_store.run_paths[1]
    page.goto(_run_url(web_store, path) + "#logs")
    lines = page.get_by_test_id("log-line")
    expect(lines.filter(has_text="epoch 7 of run-1")).to_have_count(1)
    shot(page, "logs")
    page.get_by_label("search logs").fill("epoch 2")
    page.get_by_label("search logs").press("Enter")
    # "epoch 2" matches epochs 2 and 20-29.
    expect(page.get_by_test_id("log-count")).to_contain_text("11 lines")
    href = page.get_by_role("link", name="Download").get_attribute("href")
    body = page.request.get(web_store.base + href).text()
    assert f"epoch {STEPS - 1} of run-1" in body


def test_the_files_tab_lists_previews_and_downloads_a_saved_file(
    web_store: WebStore, page: Any, shot: Callable[[Any, str], Any]
) -> None:
    path = web_store.run_paths[3]
    page.goto(_run_url(web_store, path) + "#files")
    row = page.locator('tr[data-file="notes-3.txt"]')
    expect(row).to_have_count(1)
    row.get_by_role("button", name="notes-3.txt").click()
    expect(page.get_by_test_id("file-preview")).to_contain_text("hello from run-3")
    shot(page, "files")
    with page.expect_download() as download:
        row.get_by_role("link", name="download").click()
    assert download.value.suggested_filename == "notes-3.txt"
    assert Path(download.value.path()).read_text() == "hello from run-3\n"


def test_a_live_run_updates_without_reload_then_is_stopped_killed_and_deleted(
    web_store: WebStore, page: Any, shot: Callable[[Any, str], Any]
) -> None:
    live = web_store.script(LIVE)
    try:
        assert live.stdout is not None
        line = live.stdout.readline()
        assert line.startswith("RUN "), line + (live.stderr.read() if live.stderr else "")
        path = line.split()[1]

        def state() -> str | None:
            try:
                return str(_api_run(web_store, path)["state"])
            except urllib.error.HTTPError:
                return None

        wait_for(lambda: state() == "running", 60, "the live run to reach the store")
        page.goto(_run_url(web_store, path) + "#charts")
        expect(page.get_by_test_id("title-state")).to_have_text("running")
        chart = page.get_by_test_id("chart").first
        expect(chart).to_be_visible()
        first = int(chart.get_attribute("data-points") or 0)
        started = time.monotonic()
        # New rows show without a reload, within 2 s of the page's last look.
        page.wait_for_function(
            f"() => Number(document.querySelector('[data-testid=chart]').dataset.points) > {first}",
            timeout=2500,
        )
        assert time.monotonic() - started < 2.5
        shot(page, "live")
        page.get_by_role("tab", name="Overview").click()
        page.get_by_test_id("stop").click()
        expect(page.get_by_test_id("title-state")).to_have_text("killed", timeout=30_000)
        assert live.wait(30) != 0
        expect(page.get_by_test_id("stop")).to_have_count(0)
        shot(page, "killed")

        page.get_by_test_id("delete").click()
        dialog = page.get_by_test_id("dialog")
        dialog.get_by_label("Also delete files").check()
        dialog.get_by_test_id("confirm-delete").click()
        page.wait_for_url(f"{web_store.base}/local/webtest-live")
        with pytest.raises(urllib.error.HTTPError) as gone:
            _api_run(web_store, path)
        assert gone.value.code == 410  # deleted: the id stays reserved
        expect(page.get_by_test_id("run-total")).to_have_text("0 runs")
    finally:
        if live.poll() is None:
            live.kill()
        live.communicate()


LONG_LOG = """
import tracklog
with tracklog.init(project="webtest-logs", name="chatty") as run:
    for i in range(3000):
        print(f"line {i} of the long log", flush=True)
    run.log({"x": 1.0})
    print("RUN", run.path, flush=True)
"""


def test_a_long_log_keeps_only_the_lines_in_view_in_the_page(
    web_store: WebStore, page: Any, shot: Callable[[Any, str], Any]
) -> None:
    chatty = web_store.script(LONG_LOG)
    out, err = chatty.communicate(timeout=120)
    assert chatty.returncode == 0, err
    path = next(line.split()[1] for line in out.splitlines() if line.startswith("RUN "))

    def stored_lines() -> int:
        return int(web_store.get(f"/api/v1/runs/{path}/logs?limit=1")["total"])

    wait_for(lambda: stored_lines() >= 3001, 60, "the console output to be stored")
    page.goto(_run_url(web_store, path) + "#logs")
    expect(page.get_by_test_id("log-count")).to_contain_text("3001 lines")
    lines = page.get_by_test_id("log-line")
    expect(lines.filter(has_text="line 0 of the long log")).to_have_count(1)
    assert lines.count() < 200  # the lines in view and a margin, not 3,001
    page.locator(".logbox").evaluate("el => el.scrollTop = el.scrollHeight")
    expect(lines.filter(has_text="line 2999 of the long log")).to_have_count(1)
    assert lines.count() < 200
    shot(page, "long-log")
