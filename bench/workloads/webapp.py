"""The web app in headless Chromium (Debian's ``chromium`` driven by Playwright): a store server of its
own on SQLite with a 2,000-run project (the query workload's runs) and one run of 1,000,000 rows x 10
keys (the ingest workload's run), both created through the Ingest RPC before any clock starts.

Figures, each the median of ``--reps`` fresh page loads in a fresh browser context (no cache):
- ``table_s``: navigation start until the project page's first rows are painted (the app marks the
  moment, ``performance.now()`` since navigation, in ``document.body.dataset.tableShownAt``);
- ``charts_s``: navigation start until the 1M-row run's ten charts are drawn (uPlot's draw hook marks
  the last draw; the page asks the server for 1,000 points per key, downsampled keeping extremes);
- ``table_render_s`` / ``charts_render_s``: the page's own share of those, from the answer's last
  byte (Resource Timing) until the paint;
- ``sort_s`` / ``filter_s``: a column sorted from its menu / a filter applied from the builder, from
  the request the click causes until the new rows are painted (``dataset.tableMs``), each started once
  the page is at rest (the charts' history requests of the rows shown are answered).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c
import ingest
import query


def _store(workdir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    info = workdir / "server.json"
    log = open(workdir / "server.log", "ab")  # noqa: SIM115 - the child holds its own copy
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tracklog_server", "--db", f"sqlite:///{workdir / 'store.db'}",
            "--port", "0", "--http-port", "0", "--address-file", str(info),
        ],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=workdir,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 120
    while not info.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (workdir / "server.log").read_text()[-2000:]
            raise SystemExit(f"the store server did not start: {tail}")
        time.sleep(0.02)  # waiting for another process to write its address file
    data = json.loads(info.read_text())
    return proc, str(data["grpc"]), str(data["http"]).rstrip("/")


def _ingest_big_run(server: str, rows: int) -> str:
    import grpc

    from tracklog.v1 import store_pb2

    ref, requests = ingest._requests(rows, 1000, 10, "web1m")
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(server, options=options) as channel:
        call = channel.unary_unary(
            "/tracklog.v1.Store/Ingest",
            request_serializer=None,
            response_deserializer=store_pb2.IngestResponse.FromString,
        )
        for request in requests:
            if not call(request, timeout=300).accepted:
                raise SystemExit("Ingest refused a request of the 1M-row run")
    return f"{ref.entity}/{ref.project}/{ref.id}"


def _ms(page: Any, name: str) -> float:
    page.wait_for_function(f"() => document.body.dataset.{name} !== undefined", timeout=60_000)
    return float(page.evaluate(f"() => Number(document.body.dataset.{name})"))


def _answered_ms(page: Any, part: str) -> float:
    """When (ms since navigation) the first response whose URL holds ``part`` had fully arrived."""
    js = (
        "part => { const e = performance.getEntriesByType('resource').find(r => r.name.includes(part));"
        " return e ? e.responseEnd : NaN }"
    )
    return float(page.evaluate(js, part))


def _measure(browser: Any, base: str, big_run: str, runs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/bench/query")
    out["table_s"] = _ms(page, "tableShownAt") / 1000
    # The page's own share: from the runs' answer to the rows painted.
    out["table_render_s"] = out["table_s"] - _answered_ms(page, "/runs?") / 1000
    rows = page.locator("[data-testid=runs-table] tbody tr[data-run]").count()
    total = page.get_by_test_id("run-total").inner_text()
    if rows == 0 or total != f"{runs} runs":
        raise SystemExit(f"the project page shows {rows} rows, total {total!r}; expected {runs} runs")

    _ms(page, "historyLoadedAt")  # the charts' requests are done: the page is at rest
    page.evaluate(
        "() => { delete document.body.dataset.tableMs; delete document.body.dataset.historyLoadedAt }"
    )
    page.locator('th[data-col="config.lr"]').hover()
    page.get_by_test_id("colmenu-config.lr").click()
    page.get_by_role("menuitem", name="Sort desc").click()
    out["sort_s"] = _ms(page, "tableMs") / 1000

    page.get_by_role("button", name="Filter").click()
    page.get_by_role("button", name="+ Add filter").click()
    row = page.get_by_test_id("filter-row").nth(0)
    row.get_by_label("column").select_option("config.lr")
    row.get_by_label("operator").select_option("<")
    row.get_by_label("value").fill("0.005")
    _ms(page, "historyLoadedAt")
    page.evaluate("() => { delete document.body.dataset.tableMs }")
    page.get_by_test_id("apply-filter").click()
    out["filter_s"] = _ms(page, "tableMs") / 1000
    shown = page.get_by_test_id("run-total").inner_text()
    if shown != f"{runs // 2} runs":  # lr is 0.1, 0.01, 0.001, 0.0001 in turn: half are < 0.005
        raise SystemExit(f"the filtered table says {shown!r}, expected {runs // 2} runs")
    context.close()

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    entity, project, run_id = big_run.split("/")
    page.goto(f"{base}/{entity}/{project}/runs/{run_id}#charts")
    page.wait_for_function(
        f"() => document.querySelectorAll('[data-testid=chart]').length === {len(c.KEYS)}", timeout=60_000
    )
    _ms(page, "chartsShownAt")
    out["charts_s"] = _ms(page, "chartDrawnAt") / 1000
    out["charts_render_s"] = out["charts_s"] - _answered_ms(page, "/history?") / 1000
    points = page.locator("[data-testid=chart]").first.get_attribute("data-points")
    out["chart_points"] = float(points or 0)
    context.close()
    return out


def main() -> int:
    p = c.parser(__doc__ or "")
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    proc, grpc_address, http = _store(args.workdir)
    try:
        t0 = time.perf_counter()
        query._populate_tracklog(grpc_address, args.runs)
        big = _ingest_big_run(grpc_address, args.rows)
        populate_s = time.perf_counter() - t0
        samples: list[dict[str, float]] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            _measure(browser, http, big, args.runs)  # warm-up: the server's first queries, the disk cache
            for _ in range(args.reps):
                samples.append(_measure(browser, http, big, args.runs))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    out: dict[str, Any] = {"tool": "tracklog", "runs": args.runs, "rows": args.rows, "populate_s": populate_s}
    for key in samples[0]:
        out[key] = statistics.median(s[key] for s in samples)
    out["samples"] = samples
    c.write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
