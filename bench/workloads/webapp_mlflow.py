"""MLflow's UI (``mlflow server`` on SQLite) on the same data as webapp.py, in the same headless Chromium.

The 2,000 runs are the query workload's (``query._populate_mlflow``: straight into MLflow's tables);
the 1,000,000-row x 10-key run goes into its ``metrics`` and ``latest_metrics`` tables with sqlite3's
executemany before any clock starts (through its client it would take hours: 1,000 metrics a call).

Figures, medians over ``--reps`` fresh browser contexts:
- ``table_s``: navigation start until the experiment page shows a run's name in its runs table;
- ``charts_s``: navigation start until the run's "Model metrics" page has drawn a chart for each of
  the 10 keys (plotly's ``.js-plotly-plot`` with a trace), or ``nan`` when it does not within 60 s.
Sort and filter are not timed: MLflow's table is driven by a search expression, not comparable clicks.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c
import query

TIMEOUT_MS = 60_000


def _big_run(uri: str, db: Path, experiment: str, rows: int) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run_id = str(client.create_run(experiment, run_name="web1m").info.run_id)
    client.set_terminated(run_id)
    now = int(time.time() * 1000)
    metric = "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, 0)"
    latest = "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?,?,?,?,0,?)"
    con = sqlite3.connect(db)
    with con:
        for key in c.KEYS:
            con.executemany(metric, ((key, math.sin(s / 1000), now + s, run_id, s) for s in range(rows)))
            con.execute(latest, (key, math.sin((rows - 1) / 1000), now + rows - 1, rows - 1, run_id))
    con.close()
    return run_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(uri: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    log = open(workdir / "mlflow-server.log", "ab")  # noqa: SIM115 - the child holds its own copy
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=workdir,
        start_new_session=True,  # its own process group: it starts a job runner and queue consumers
    )  # fmt: skip
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (workdir / "mlflow-server.log").read_text()[-2000:]
                raise SystemExit(f"mlflow server did not start: {tail}") from exc
            time.sleep(0.1)  # waiting for another process to listen
    return proc, base


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stops the server and every process it started (its job runner and queue consumers outlive a
    SIGTERM to the server alone): SIGTERM to the group, SIGKILL what is left after 15 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        proc.poll()  # reaps the server, so that only live members keep the group alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)  # waiting for other processes to exit
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(15)


def _now(page: Any) -> float:
    return float(page.evaluate("() => performance.now()")) / 1000


def _measure(browser: Any, base: str, experiment: str, run_id: str) -> dict[str, float]:
    out: dict[str, float] = {}
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/#/experiments/{experiment}/runs")  # MLflow 3 opens its GenAI overview at /
    page.get_by_role("link", name=re.compile(r"^run-\d+$")).first.wait_for(timeout=TIMEOUT_MS)
    out["table_s"] = _now(page)
    context.close()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/#/experiments/{experiment}/runs/{run_id}/model-metrics")
    try:
        page.wait_for_function(
            f"() => [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.querySelector('.trace'))"
            f".length >= {len(c.KEYS)}",
            timeout=TIMEOUT_MS,
        )
        out["charts_s"] = _now(page)
    except Exception:  # not drawn within the timeout: reported as nan, not a failure
        out["charts_s"] = math.nan
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

    db = args.workdir / "mlflow-web.db"
    uri = f"sqlite:///{db}"
    t0 = time.perf_counter()
    experiment, *_ = query._populate_mlflow(uri, args.runs)
    run_id = _big_run(uri, db, experiment, args.rows)
    populate_s = time.perf_counter() - t0
    proc, base = _server(uri, args.workdir)
    samples: list[dict[str, float]] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            _measure(browser, base, experiment, run_id)  # warm-up, as for tracklog
            for _ in range(args.reps):
                samples.append(_measure(browser, base, experiment, run_id))
            browser.close()
    finally:
        _stop(proc)
    out: dict[str, Any] = {
        "tool": "mlflow-sqlite",
        "runs": args.runs,
        "rows": args.rows,
        "populate_s": populate_s,
    }
    for key in samples[0]:
        out[key] = statistics.median(s[key] for s in samples)
    out["samples"] = samples
    c.write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
