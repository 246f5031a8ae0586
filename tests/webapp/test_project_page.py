"""The project page in a real browser: the runs table filtered, sorted, grouped, searched, a column
pinned, runs tagged in bulk, key-based colours with their legend, and the view kept in the URL."""

from __future__ import annotations

import re
import urllib.error
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.e2e.conftest import wait_for
from tests.webapp.conftest import LRS, PROJECT, WebStore

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
expect = sync_api.expect

pytestmark = pytest.mark.slow

ROWS = "[data-testid=runs-table] tbody tr[data-run]"


def _names(page: Any) -> list[str]:
    return list(page.locator(f"{ROWS} td[data-col=name] a").all_inner_texts())


def _column_menu(page: Any, column: str, item: str) -> None:
    page.locator(f'th[data-col="{column}"]').hover()
    page.get_by_test_id(f"colmenu-{column}").click()
    page.get_by_role("menuitem", name=item).click()


def _open(page: Any, store: WebStore, query: str = "") -> None:
    page.goto(f"{store.base}/local/{PROJECT}{query}")
    expect(page.locator(ROWS)).to_have_count(len(LRS))


def test_the_table_shows_every_run_with_its_config_and_summary_columns(
    web_store: WebStore, page: Any, shot: Callable[[Any, str], Any]
) -> None:
    _open(page, web_store)
    assert sorted(_names(page)) == [f"run-{i}" for i in range(len(LRS))]
    headers = page.locator("[data-testid=runs-table] thead th[data-col]").evaluate_all(
        "ths => ths.map(th => th.dataset.col)"
    )
    run_fields = ["name", "state", "created_at", "runtime", "user", "host", "tags", "notes", "group"]
    run_fields.append("job_type")
    keys = ["config.lr", "config.optimizer", "config.batch", "summary.acc", "summary.loss"]
    assert [c for c in run_fields + keys if c not in headers] == []
    assert [c for c in headers if "_tracklog" in c] == []  # define_metric's own key is not a column
    expect(page.get_by_test_id("run-total")).to_have_text("5 runs")
    # One chart per metric, one line per run.
    expect(page.get_by_test_id("chart")).to_have_count(2)
    expect(page.locator("[data-testid=run-legend] .legend-item")).to_have_count(len(LRS))
    shot(page, "project")


def test_a_filter_built_in_the_page_narrows_the_rows_and_stays_in_the_url(
    web_store: WebStore, page: Any, shot: Callable[[Any, str], Any]
) -> None:
    _open(page, web_store)
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("button", name="+ Add filter").click()
    row = page.get_by_test_id("filter-row").nth(0)
    row.get_by_label("column").select_option("config.lr")
    row.get_by_label("operator").select_option("<")
    row.get_by_label("value").fill("0.01")
    page.get_by_test_id("apply-filter").click()
    expect(page.locator(ROWS)).to_have_count(2)
    assert sorted(_names(page)) == ["run-2", "run-4"]  # lr 0.001 and 0.005
    # or: lr < 0.01, or optimizer in (sgd): runs 1 and 3 join.
    page.get_by_role("button", name="+ Add filter").click()
    second = page.get_by_test_id("filter-row").nth(1)
    page.get_by_label("and/or").select_option("or")
    second.get_by_label("column").select_option("config.optimizer")
    second.get_by_label("operator").select_option("in")
    second.get_by_label("value").fill("sgd, rmsprop")
    page.get_by_test_id("apply-filter").click()
    expect(page.locator(ROWS)).to_have_count(4)
    shot(page, "filtered")
    # A bad value is named in the builder and never sent.
    second.get_by_label("column").select_option("config.batch")
    second.get_by_label("operator").select_option(">")
    second.get_by_label("value").fill("big")
    page.get_by_test_id("apply-filter").click()
    alert = page.get_by_test_id("filter-builder").get_by_role("alert")
    expect(alert).to_contain_text('"big" is not a number')
    # The applied view is in the URL: opening it again shows the same rows.
    query = parse_qs(urlparse(page.url).query)
    assert "filter" in query
    _shared = page.url
    page.goto(_shared)
    expect(page.locator(ROWS)).to_have_count(4)


def test_sorting_a_column_asks_the_server_for_that_order(web_store: WebStore, page: Any) -> None:
    _open(page, web_store)
    _column_menu(page, "config.lr", "Sort desc")
    by_lr = [f"run-{i}" for i, _ in sorted(enumerate(LRS), key=lambda p: -p[1])]
    expect(page.locator(f"{ROWS} td[data-col=name] a")).to_have_text(by_lr)
    assert parse_qs(urlparse(page.url).query)["sort"] == ["-config.lr"]
    _column_menu(page, "summary.acc", "Sort asc")
    expect(page.locator(f"{ROWS} td[data-col=name] a")).to_have_text([f"run-{i}" for i in range(len(LRS))])


def test_a_pinned_column_sits_after_the_name_and_stays_pinned_on_reload(
    web_store: WebStore, page: Any, shot: Callable[[Any, str], Any]
) -> None:
    _open(page, web_store)
    _column_menu(page, "summary.acc", "Pin column")
    cols = page.locator("[data-testid=runs-table] thead th[data-col]")
    expect(cols.nth(1)).to_have_attribute("data-col", "summary.acc")
    expect(cols.nth(1)).to_have_class(re.compile(r"\bpinned\b"))
    _column_menu(page, "host", "Hide column")
    expect(page.locator('th[data-col="host"]')).to_have_count(0)
    page.reload()
    expect(page.locator(ROWS)).to_have_count(len(LRS))
    expect(cols.nth(1)).to_have_attribute("data-col", "summary.acc")
    expect(page.locator('th[data-col="host"]')).to_have_count(0)
    # Scrolled sideways, the pinned column stays in view beside the name.
    page.locator(".table-scroll").evaluate("el => el.scrollLeft = el.scrollWidth")
    box = page.locator(f'{ROWS} td[data-col="summary.acc"]').first.bounding_box()
    name_box = page.locator(f"{ROWS} td[data-col=name]").first.bounding_box()
    assert box is not None
    assert name_box is not None
    assert abs(box["x"] - (name_box["x"] + name_box["width"])) < 2
    shot(page, "pinned")


def test_a_header_dragged_onto_another_moves_its_column_there(web_store: WebStore, page: Any) -> None:
    _open(page, web_store)
    cols = page.locator("[data-testid=runs-table] thead th[data-col]")
    before = cols.evaluate_all("ths => ths.map(th => th.dataset.col)")
    assert before.index("tags") > before.index("state")
    page.locator('th[data-col="tags"]').drag_to(page.locator('th[data-col="state"]'))
    after = cols.evaluate_all("ths => ths.map(th => th.dataset.col)")
    assert after.index("tags") == before.index("state")
    assert after[0] == "name"
    assert sorted(after) == sorted(before)
    assert "tags" in parse_qs(urlparse(page.url).query)["cols"][0]


def test_grouping_shows_each_value_with_its_count_and_min_mean_max(
    web_store: WebStore, page: Any, shot: Callable[[Any, str], Any]
) -> None:
    _open(page, web_store)
    page.get_by_label("group by").select_option("config.optimizer")
    rows = page.get_by_test_id("group-row")
    expect(rows).to_have_count(2)
    adam = rows.filter(has_text="adam")
    expect(adam.get_by_test_id("group-count")).to_have_text("3")
    expect(rows.filter(has_text="sgd").get_by_test_id("group-count")).to_have_text("2")
    # adam runs are 0, 2, 4: acc 0.5, 0.7, 0.9.
    expect(adam).to_contain_text("0.5 / 0.7 / 0.9")
    assert parse_qs(urlparse(page.url).query)["group"] == ["config.optimizer"]
    shot(page, "grouped")
    # A group's value filters the table to its runs.
    adam.get_by_role("button", name="adam").click()
    expect(page.locator(ROWS)).to_have_count(3)
    assert sorted(_names(page)) == ["run-0", "run-2", "run-4"]


def test_the_search_box_matches_names_and_regular_expressions(web_store: WebStore, page: Any) -> None:
    _open(page, web_store)
    search = page.get_by_label("search")
    search.fill("run-3")
    search.press("Enter")
    expect(page.locator(ROWS)).to_have_count(1)
    search.fill("/^run-[12]$/")
    search.press("Enter")
    expect(page.locator(ROWS)).to_have_count(2)
    assert sorted(_names(page)) == ["run-1", "run-2"]


def test_key_based_colours_split_max_acc_into_four_buckets_named_in_the_legend(
    web_store: WebStore, page: Any, shot: Callable[[Any, str], Any]
) -> None:
    _open(page, web_store)
    page.get_by_role("button", name="Colours").click()
    page.get_by_label("colour key").select_option("acc")
    page.get_by_label("y value").select_option("max")
    buckets = page.get_by_label("buckets")
    buckets.fill("4")
    buckets.press("Tab")
    legend = page.get_by_test_id("bucket-legend")
    expect(legend.get_by_test_id("bucket")).to_have_count(4)
    # Max acc of run i is 0.5 + 0.1 i: the range 0.5..0.9 in four equal buckets.
    ranges = ["0.5 to 0.6", "0.6 to 0.7", "0.7 to 0.8", "0.8 to 0.9"]
    expect(legend.locator(".bucket-label")).to_have_text(ranges)
    swatches = legend.locator(".swatch").evaluate_all(
        "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    assert len(set(swatches)) == 4

    def swatch_of(name: str) -> str:
        row = page.locator(ROWS).filter(has=page.get_by_role("link", name=name, exact=True))
        return str(row.locator(".swatch").evaluate("e => getComputedStyle(e).backgroundColor"))

    assert swatch_of("run-0") == swatches[0]
    assert swatch_of("run-4") == swatches[3]
    query = parse_qs(urlparse(page.url).query)
    assert (query["color"], query["agg"], query["buckets"]) == (["acc"], ["max"], ["4"])
    shot(page, "colours")


def test_selected_runs_are_tagged_in_bulk(web_store: WebStore, page: Any) -> None:
    _open(page, web_store)
    for name in ("run-0", "run-1"):
        page.get_by_label(f"select {name}", exact=True).check()
    bar = page.get_by_test_id("bulk-bar")
    expect(bar).to_contain_text("2 selected")
    bar.get_by_label("tags or group").fill("bulk-tag")
    bar.get_by_role("button", name="Tag", exact=True).click()
    tagged = page.locator(f"{ROWS} td[data-col=tags]", has_text="bulk-tag")
    expect(tagged).to_have_count(2)
    runs = web_store.get(f"/api/v1/projects/local/{PROJECT}/runs?per_page=100")["runs"]
    assert sorted(r["name"] for r in runs if "bulk-tag" in r["tags"]) == ["run-0", "run-1"]


LIVE_PROJECT = """
import os, tracklog
run = tracklog.init(project="webtest-plive", name="live-two")
print("RUN", run.path, flush=True)
i = 0
while not os.path.exists("stop-plive"):
    run.log({"x": float(i)})
    i += 1
run.finish()
"""


def test_the_project_page_follows_a_running_run_until_it_finishes_without_a_reload(
    web_store: WebStore, page: Any
) -> None:
    live = web_store.script(LIVE_PROJECT)
    try:
        assert live.stdout is not None
        line = live.stdout.readline()
        assert line.startswith("RUN "), line + (live.stderr.read() if live.stderr else "")
        run_id = line.split()[1].split("/")[-1]

        def state_in_store() -> str | None:
            try:
                return str(web_store.get(f"/api/v1/runs/local/webtest-plive/{run_id}")["state"])
            except urllib.error.HTTPError:
                return None  # not synced yet

        wait_for(lambda: state_in_store() == "running", 60, "the live run to reach the store")
        page.goto(f"{web_store.base}/local/webtest-plive")
        state = page.locator(f"{ROWS}[data-run='{run_id}'] td[data-col=state]")
        expect(state).to_have_text("running")
        expect(page.get_by_test_id("chart")).to_have_count(1)
        points = "Number(document.querySelector('[data-testid=chart]')?.dataset.points ?? 0)"
        first = page.evaluate(f"() => {points}")
        # The running run's chart grows, and its state changes, with no reload of the page.
        page.wait_for_function(f"() => {points} > {first}", timeout=15_000)
        (web_store.workdir / "stop-plive").touch()
        assert live.wait(60) == 0
        expect(state).to_have_text("finished", timeout=15_000)
    finally:
        if live.poll() is None:
            live.kill()
        live.communicate()
