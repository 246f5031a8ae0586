"""tracklog's benchmark suite, run by ``scripts/bench``: tracklog against wandb (offline) and MLflow (file
store and SQLite) on the same workloads, each in a fresh process, alternating tool by tool within each
repetition, reporting medians. Prints a table and writes bench/results.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from figures import COLUMN_TITLES, MLFLOW_FILE, MLFLOW_SQLITE, TRACKLOG, WANDB, Figure, table
from forkhost import ForkHost
from sandbox import ROOT, Sandbox, WorkloadFailed, base_env, empty_trash
from sandbox import common as _common

WORKLOAD_NAMES = ("import", "init", "hotpath", "idle", "ingest", "query", "training", "webapp")


@dataclass
class Settings:
    reps: int = 3
    hot_n: dict[str, int] = field(
        default_factory=lambda: {TRACKLOG: 100_000, WANDB: 5_000, MLFLOW_FILE: 1_000, MLFLOW_SQLITE: 300}
    )
    import_reps: int = 5
    idle_seconds: float = 60.0
    ingest_rows: int = 1_000_000
    pg_ingest_rows: int = 250_000  # PostgreSQL ingests at ~50k rows/s here: a quarter saves ~30 s
    mlflow_ingest_rows: int = 2_000
    query_runs: int = 2_000
    mlflow_query_runs: int = 2_000
    search_runs: int = 10_000  # runs of 20 config + 20 summary keys searched (DESIGN.md's budget row)
    train_steps: int = 500  # ~7 s a loop here: 19 runs (9 with a tool, 10 baselines) are most of the suite
    train_hidden: int = 1024
    train_batch: int = 128
    # MLflow with SQLite spends ~10 ms per log call: ~10 s more per training run, too much for the
    # 10-minute suite (its per-call cost is in the hot path); --train-mlflow-sqlite adds it.
    train_tools: tuple[str, ...] = (TRACKLOG, WANDB, MLFLOW_FILE)
    web_runs: int = 2_000  # the web app in headless Chromium (bench/workloads/webapp.py)
    web_rows: int = 1_000_000


QUICK = Settings(
    reps=1,
    hot_n={TRACKLOG: 10_000, WANDB: 1_000, MLFLOW_FILE: 200, MLFLOW_SQLITE: 50},
    import_reps=1,
    idle_seconds=5.0,
    ingest_rows=100_000,
    pg_ingest_rows=100_000,
    mlflow_ingest_rows=1_000,
    query_runs=200,
    mlflow_query_runs=200,
    search_runs=2_000,
    train_steps=100,
    web_runs=200,
    web_rows=100_000,
)


def _k(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


class Bench:
    def __init__(self, settings: Settings, tools: list[str]) -> None:
        self.s = settings
        self.tools = tools
        self.figures: dict[str, Figure] = {}
        self.raw: dict[str, list[dict[str, Any]]] = {}
        self.notes: list[str] = []
        self.errors: list[str] = []  # tracklog failures: the suite exits non-zero
        self.skipped: list[str] = []

    def fig(self, fid: str, label: str, unit: str, **kwargs: Any) -> Figure:
        if fid not in self.figures:
            self.figures[fid] = Figure(fid, label, unit, **kwargs)
        return self.figures[fid]

    def keep(self, workload: str, result: dict[str, Any]) -> None:
        self.raw.setdefault(workload, []).append(result)

    def failed(self, what: str, tool: str, exc: Exception) -> None:
        text = f"{what} [{tool}]: {exc}"
        print(f"  !! {text}", file=sys.stderr)
        (self.errors if tool in (TRACKLOG, "none") else self.skipped).append(text)


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _define_figures(b: Bench) -> None:
    """Declares every row in table order (rows without samples are left out of the table)."""
    n = b.s.hot_n
    b.fig("log_p50", "log() 10 scalars: caller p50", "us", budget_op="<=", budget=2.0)
    b.fig("log_p99", "log() 10 scalars: caller p99", "us", budget_op="<=", budget=20.0)
    b.fig("log_max", "log() 10 scalars: caller max", "us")
    b.fig("log_ref", "  (reference: list.append(dict), same timing)", "us")
    b.fig("cpu_row", "CPU per row, all processes", "us", budget_op="<=", budget=15.0)
    b.fig("cpu_row_train", "  training process (incl. its sender thread)", "us")
    b.fig("cpu_row_daemon", "  daemon (wandb: its service)", "us")
    b.fig("cpu_row_server", "  store server", "us")
    b.fig("e2e_rows", "rows/s end to end (tracklog: until queryable)", "rows/s", lower_is_better=False)
    b.fig("e2e_lag", "last log() -> all rows stored", "s")
    b.fig(
        "finish", f"finish() after {_k(n[TRACKLOG])} rows (others: after N)", "s", budget_op="<=", budget=0.2
    )
    b.fig("rss_daemon_load", "daemon RSS under load (wandb: service)", "MB")
    b.fig("rss_server_load", "store server RSS under load", "MB")
    b.fig("rss_train", "training process peak RSS", "MB")
    b.fig("import", "import (fresh process)", "s", budget_op="<=", budget=0.15)
    b.fig("init_warm", "init(), daemon running / warm", "s", budget_op="<=", budget=0.05)
    b.fig("init_cold", "init(), cold (no daemon; fresh dir/db)", "s", budget_op="<=", budget=1.0)
    b.fig("init_capture", "  automatic capture's share of warm init()", "s", budget_op="<=", budget=0.005)
    b.fig(
        "idle_cpu", f"daemon at rest ({b.s.idle_seconds:g} s): CPU of a core", "%", budget_op="<=", budget=1.0
    )
    b.fig("idle_rss", "daemon at rest: RSS", "MB", budget_op="<=", budget=80.0)
    b.fig("idle_server_cpu", "store server at rest: CPU of a core", "%")
    b.fig("idle_server_rss", "store server at rest: RSS", "MB")
    rows = _k(b.s.ingest_rows)
    b.fig(
        "ingest_sqlite",
        "ingest into the store, SQLite",
        "rows/s",
        lower_is_better=False,
        budget_op=">=",
        budget=2e5,
    )
    b.fig("ingest_pg", "ingest into the store, PostgreSQL", "rows/s", lower_is_better=False)
    b.fig("ingest_cpu", "  server CPU per ingested row (SQLite)", "us")
    b.fig("read_scan", f"read 1 key of a {rows}-row run: scan_history, SQLite", "s")
    b.fig("read_raw", f"read 1 key of a {rows}-row run: History RPC, SQLite", "s")
    b.fig("read_scan_pg", f"read 1 key of a {_k(b.s.pg_ingest_rows)}-row run: scan_history, PG", "s")
    b.fig("read_rate", "read 1 key: rows/s (MLflow: get_metric_history)", "rows/s", lower_is_better=False)
    b.fig("query_list", f"list a {_k(b.s.query_runs)}-run project", "s")
    b.fig("query_read", "read one run back (run + its history)", "s")
    b.fig("query_populate", "  create runs through the Ingest RPC", "runs/s", lower_is_better=False)
    searched = _k(b.s.search_runs)
    for backend, name in (("", "SQLite"), ("_pg", "PostgreSQL")):
        b.fig(
            f"search_page{backend}",
            f"first page of a filtered, sorted search, {searched} runs, {name}",
            "s",
            budget_op="<=",
            budget=0.1,
        )
        b.fig(f"search_group{backend}", f"group_by of the same runs, {name}", "s", budget_op="<=", budget=0.3)
    b.fig(
        "train_slowdown",
        "training loop slowdown vs no logging",
        "%",
        budget_op="<=",
        budget=1.0,
        no_ratio=True,
    )
    b.fig("train_step", "  median step time, vs no logging", "%", no_ratio=True)
    b.fig("train_cpu", "  training process CPU in the loop, vs no logging", "%", no_ratio=True)
    b.fig("train_threads", "  its threads in the training process, CPU", "%", no_ratio=True)
    b.fig("train_background", "  background processes' CPU during the loop", "%")
    b.fig("train_overhead", "  init() + finish() around the loop", "s")
    web_runs, web_rows = _k(b.s.web_runs), _k(b.s.web_rows)
    b.fig("web_table", f"web app: {web_runs}-run project's table shown", "s", budget_op="<=", budget=1.0)
    b.fig("web_charts", f"web app: {web_rows}-row x 10-key run's charts", "s", budget_op="<=", budget=1.0)
    b.fig("web_sort", "web app: sort the table", "s", budget_op="<=", budget=0.2)
    b.fig("web_filter", "web app: filter the table", "s", budget_op="<=", budget=0.2)


# -- workloads ----------------------------------------------------------------------------------------


def w_import(b: Bench) -> None:
    modules = {TRACKLOG: "tracklog", WANDB: "wandb", MLFLOW_FILE: "mlflow"}
    code = "import time; t = time.perf_counter(); import {m}; print(time.perf_counter() - t)"
    fig = b.figures["import"]
    with Sandbox(TRACKLOG, "import") as box:
        for rep in range(b.s.import_reps + 1):  # the first round warms the disk cache and .pyc files
            for tool, module in modules.items():
                if tool not in b.tools:
                    continue
                proc = subprocess.run(
                    [sys.executable, "-c", code.format(m=module)],
                    cwd=box.dir,
                    env=box.env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    b.failed("import", tool, RuntimeError(proc.stderr[-1000:]))
                    continue
                value = float(proc.stdout.strip().splitlines()[-1])
                b.keep("import", {"tool": tool, "rep": rep, "import_s": value})
                if rep > 0:
                    fig.add(tool, value)
                    if tool == MLFLOW_FILE and MLFLOW_SQLITE in b.tools:
                        fig.add(MLFLOW_SQLITE, value)  # the same import


def w_init(b: Bench) -> None:
    for rep in range(b.s.reps):
        for tool in b.tools:
            progress(f"init: rep {rep + 1}/{b.s.reps}, {tool}")
            try:
                with Sandbox(tool, "init") as box:
                    cold = box.run("startup.py", "--tool", tool, "--phase", "cold")
                    warm = box.run("startup.py", "--tool", tool, "--phase", "warm")
                    if tool == TRACKLOG:
                        _capture_share(b, box, warm)
            except WorkloadFailed as exc:
                b.failed("init", tool, exc)
                continue
            b.keep("init", cold)
            b.keep("init", warm)
            b.figures["init_cold"].add(tool, cold["init_s"])
            b.figures["init_warm"].add(tool, warm["init_s"])


# Console capture, metadata and system metrics off: what init() costs without automatic capture.
NO_CAPTURE = {"TRACKLOG_CONSOLE": "off", "TRACKLOG_METADATA": "false", "TRACKLOG_SYSTEM_METRICS": "false"}
# Warm init() with and without capture, alternating, per repetition: the share is a difference of
# two ~20 ms figures that vary by +-10 ms from one process to the next, so one pair cannot show it.
CAPTURE_PAIRS = 3


def _capture_share(b: Bench, box: Sandbox, warm: dict[str, Any]) -> None:
    """The median over CAPTURE_PAIRS of (warm init() with capture - the same without it), each pair
    run back to back; ``box`` is the repetition's sandbox with capture, whose daemon is running, and
    ``warm`` its warm run (kept by the caller)."""
    try:
        with Sandbox(TRACKLOG, "init-no-capture") as bare:
            bare.env.update(NO_CAPTURE)
            bare.run("startup.py", "--tool", TRACKLOG, "--phase", "cold")
            with_capture = [warm]
            without = [bare.run("startup.py", "--tool", TRACKLOG, "--phase", "warm")]
            for _ in range(CAPTURE_PAIRS - 1):
                with_capture.append(box.run("startup.py", "--tool", TRACKLOG, "--phase", "warm"))
                without.append(bare.run("startup.py", "--tool", TRACKLOG, "--phase", "warm"))
    except WorkloadFailed as exc:
        b.failed("init", TRACKLOG, exc)
        return
    for r in with_capture[1:]:
        b.keep("init", {**r, "capture_pair": True})
    for r in without:
        b.keep("init", {**r, "capture": False})
    diffs = [w["init_s"] - r["init_s"] for w, r in zip(with_capture, without, strict=True)]
    b.figures["init_capture"].add(TRACKLOG, statistics.median(diffs))


def _record_hotpath(b: Bench, tool: str, r: dict[str, Any]) -> None:
    calls = r["calls"]
    b.figures["log_p50"].add(tool, calls["p50_us"])
    b.figures["log_p99"].add(tool, calls["p99_us"])
    b.figures["log_max"].add(tool, calls["max_us"])
    if "reference_append" in r:
        b.figures["log_ref"].add(tool, r["reference_append"]["p50_us"])
    per_row = r["cpu_us_per_row"]
    b.figures["cpu_row"].add(tool, per_row["total"])
    b.figures["cpu_row_train"].add(tool, per_row["train"])
    if "daemon" in per_row or "service" in per_row:
        b.figures["cpu_row_daemon"].add(tool, per_row.get("daemon", per_row.get("service", math.nan)))
    if "server" in per_row:
        b.figures["cpu_row_server"].add(tool, per_row["server"])
    b.figures["e2e_rows"].add(tool, r["rows_per_s"])
    b.figures["e2e_lag"].add(tool, r["lag_s"])
    b.figures["finish"].add(tool, r["finish_s"])
    peak = r.get("peak_rss_mb", {})
    if tool == TRACKLOG:
        b.figures["rss_daemon_load"].add(tool, peak.get("daemon", math.nan))
        b.figures["rss_server_load"].add(tool, peak.get("server", math.nan))
    elif peak:
        b.figures["rss_daemon_load"].add(tool, sum(peak.values()))
    b.figures["rss_train"].add(tool, r["maxrss_train_mb"])


def w_hotpath(b: Bench) -> None:
    for fid in ("log_p50", "log_p99", "log_max", "cpu_row", "e2e_rows", "finish", "rss_train"):
        for tool in b.tools:
            if tool != TRACKLOG:
                b.figures[fid].notes[tool] = f"N={_k(b.s.hot_n[tool])}"
    for rep in range(b.s.reps):
        for tool in b.tools:
            n = b.s.hot_n[tool]
            progress(f"hotpath: rep {rep + 1}/{b.s.reps}, {tool}, N={n:,}")
            try:
                with Sandbox(tool, "hotpath") as box:
                    r = box.run("hotpath.py", "--tool", tool, "--n", str(n), sample_rss=True)
            except WorkloadFailed as exc:
                b.failed("hotpath", tool, exc)
                continue
            b.keep("hotpath", r)
            _record_hotpath(b, tool, r)


def w_idle(b: Bench) -> None:
    tools = [t for t in (TRACKLOG, WANDB) if t in b.tools]
    progress(f"idle: {', '.join(tools)} side by side for {b.s.idle_seconds:g} s")
    boxes = {tool: Sandbox(tool, "idle") for tool in tools}

    def one(tool: str) -> dict[str, Any]:
        seconds = ["--seconds", str(b.s.idle_seconds), "--settle", str(IDLE_SETTLE_S)]
        return boxes[tool].run("idle.py", "--tool", tool, *seconds)

    try:
        with ThreadPoolExecutor(len(tools)) as pool:
            futures = {tool: pool.submit(one, tool) for tool in tools}
            for tool, future in futures.items():
                try:
                    r = future.result()
                except WorkloadFailed as exc:
                    b.failed("idle", tool, exc)
                    continue
                b.keep("idle", r)
                b.figures["idle_cpu"].add(tool, r["cpu_pct"]["daemon"])
                b.figures["idle_rss"].add(tool, r["rss_mb"]["daemon"])
                if tool == TRACKLOG:
                    b.figures["idle_server_cpu"].add(tool, r["cpu_pct"].get("server", math.nan))
                    b.figures["idle_server_rss"].add(tool, r["rss_mb"].get("server", math.nan))
    finally:
        for box in boxes.values():
            box.close()


def _postgres_ok() -> bool:
    return not _postgres_problem()


@functools.cache
def _postgres_problem() -> str:
    """Why the PostgreSQL rows cannot run ("" when they can): said in the notes, never skipped silently.
    Asked once per bench (a server that is down costs a connect timeout each time)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed in the bench venv"
    try:
        with psycopg.connect(_common.POSTGRES_ADMIN_URL, connect_timeout=3):
            return ""
    except Exception as exc:
        return f"PostgreSQL at {_common.POSTGRES_ADMIN_URL} not reachable ({type(exc).__name__})"


def w_ingest(b: Bench) -> None:
    cases: list[tuple[str, str]] = [(TRACKLOG, "sqlite")]
    if _postgres_ok():
        cases.append((TRACKLOG, "postgres"))
    else:
        b.notes.append(f"{_postgres_problem()}: the PostgreSQL ingest rows skipped")
    cases += [(t, "sqlite") for t in (MLFLOW_FILE, MLFLOW_SQLITE) if t in b.tools]
    for tool in (MLFLOW_FILE, MLFLOW_SQLITE):
        b.figures["ingest_sqlite"].notes[tool] = f"log_batch, {_k(b.s.mlflow_ingest_rows)} rows"
        b.figures["read_rate"].notes[tool] = f"{_k(b.s.mlflow_ingest_rows)} rows"
    for rep in range(b.s.reps):
        for tool, backend in cases:
            rows = b.s.ingest_rows if tool == TRACKLOG else b.s.mlflow_ingest_rows
            if backend == "postgres":
                rows = b.s.pg_ingest_rows
            where = f"{tool} ({backend})" if tool == TRACKLOG else tool
            progress(f"ingest: rep {rep + 1}/{b.s.reps}, {where}, {rows:,} rows")
            try:
                with Sandbox(tool, "ingest") as box:
                    r = box.run("ingest.py", "--tool", tool, "--backend", backend, "--rows", str(rows))
            except WorkloadFailed as exc:
                b.failed(f"ingest {backend}", tool, exc)
                continue
            b.keep("ingest", r)
            if backend == "postgres":
                b.figures["ingest_pg"].add(tool, r["rows_per_s"])
                b.figures["read_scan_pg"].add(tool, r["read_scan_s"])
                continue
            b.figures["ingest_sqlite"].add(tool, r["rows_per_s"])
            b.figures["read_rate"].add(tool, r["read_scan_rows"] / r["read_scan_s"])
            if tool == TRACKLOG:
                b.figures["ingest_cpu"].add(tool, r["server_cpu_us_per_row"])
                b.figures["read_scan"].add(tool, r["read_scan_s"])
                b.figures["read_raw"].add(tool, r["read_raw_s"])


def w_query(b: Bench) -> None:
    tools = [t for t in (TRACKLOG, MLFLOW_FILE, MLFLOW_SQLITE) if t in b.tools]
    boxes: dict[str, Sandbox] = {}
    servers: list[Any] = []
    ready: dict[str, list[str]] = {}
    try:
        for tool in tools:
            runs = b.s.query_runs if tool == TRACKLOG else b.s.mlflow_query_runs
            progress(f"query: creating {runs:,} runs, {tool}")
            box = boxes[tool] = Sandbox(tool, "query")
            args = ["--tool", tool, "--runs", str(runs), "--paths", str(box.dir / "paths.json")]
            if tool == TRACKLOG:
                server = _common.StoreServerProcess(f"sqlite:///{box.dir / 'store.db'}", box.dir)
                servers.append(server)
                args += ["--server", server.address]
            try:
                r = box.run("query.py", "--phase", "populate", *args)
            except WorkloadFailed as exc:
                b.failed("query populate", tool, exc)
                continue
            b.keep("query", r)
            if tool == TRACKLOG:  # MLflow's are made by other means (see query.py): not comparable
                b.figures["query_populate"].add(tool, r["runs_per_s"])
            ready[tool] = args
            if runs != b.s.query_runs:
                b.figures["query_list"].notes[tool] = f"{_k(runs)} runs"
        for rep in range(b.s.reps):
            for tool, args in ready.items():
                progress(f"query: rep {rep + 1}/{b.s.reps}, {tool}")
                try:
                    r = boxes[tool].run("query.py", "--phase", "read", *args)
                except WorkloadFailed as exc:
                    b.failed("query read", tool, exc)
                    continue
                b.keep("query", r)
                b.figures["query_list"].add(tool, r["list_s"])
                b.figures["query_read"].add(tool, r["read_run_s"])
    finally:
        for server in servers:
            server.close()
        for box in boxes.values():
            box.close()
    _search(b)


def _search(b: Bench) -> None:
    """The query section's search figures (bench/workloads/search.py): one project per tool and
    backend, made once, queried ``--reps`` times inside the workload."""
    cases = [(TRACKLOG, "sqlite")]
    if _postgres_ok():
        cases.append((TRACKLOG, "postgres"))
    else:
        b.notes.append(f"{_postgres_problem()}: the PostgreSQL search rows skipped")
    if MLFLOW_SQLITE in b.tools:
        cases.append((MLFLOW_SQLITE, "sqlite"))
        b.figures["search_group"].notes[MLFLOW_SQLITE] = "no group-by in MLflow"
        if _postgres_ok():
            # MLflow's own SQLAlchemy store on the same PostgreSQL (its tables, its search_runs).
            cases.append((MLFLOW_SQLITE, "postgres"))
            b.figures["search_group_pg"].notes[MLFLOW_SQLITE] = "no group-by in MLflow"
            b.figures["search_page_pg"].notes[MLFLOW_SQLITE] = "MLflow's SQL store on the same PostgreSQL"
    for tool, backend in cases:
        progress(f"query: search, {tool} ({backend}), {b.s.search_runs:,} runs")
        args = ["--tool", tool, "--backend", backend, "--runs", str(b.s.search_runs)]
        try:
            with Sandbox(tool, "search") as box:
                r = box.run("search.py", *args)
        except WorkloadFailed as exc:
            b.failed(f"query search {backend}", tool, exc)
            continue
        b.keep("query", r)
        suffix = "_pg" if backend == "postgres" else ""
        b.figures[f"search_page{suffix}"].add(tool, r["first_page_s"])
        if "group_by_s" in r:
            b.figures[f"search_group{suffix}"].add(tool, r["group_by_s"])


# Training figures that compare a tool run with the mean of the two baseline runs beside it.
PAIRED_FIGURES = (("train_slowdown", "loop_s"), ("train_step", "step_median_ms"), ("train_cpu", "loop_cpu_s"))


def w_training(b: Bench) -> None:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("sklearn") is None:
        b.notes.append("training skipped: torch or scikit-learn is not installed")
        return
    tools = [t for t in b.tools if t in b.s.train_tools]
    # A baseline run (no logging) before the first tool run and after every tool run: each tool run
    # is compared with the mean of the two baselines beside it, so that the machine's drift over the
    # minutes of the suite cancels out. The tools' order rotates with the repetition.
    sequence = ["none"]
    for rep in range(b.s.reps):
        shift = rep % len(tools) if tools else 0
        for tool in tools[shift:] + tools[:shift]:
            sequence += [tool, "none"]
    results: list[dict[str, Any] | None] = []
    host = ForkHost(ROOT / "bench" / "workloads" / "training.py", base_env())
    try:
        for i, tool in enumerate(sequence):
            progress(f"training: run {i + 1}/{len(sequence)}, {tool}")
            args = ["--tool", tool, "--steps", str(b.s.train_steps)]
            args += ["--hidden", str(b.s.train_hidden), "--batch", str(b.s.train_batch)]
            try:
                with Sandbox(tool if tool != "none" else TRACKLOG, "training") as box:
                    r = box.run("training.py", *args, host=host)
            except WorkloadFailed as exc:
                b.failed("training", tool, exc)
                results.append(None)
                continue
            b.keep("training", r)
            results.append(r)
    finally:
        host.close()
    for i, tool in enumerate(sequence):
        r = results[i]
        if tool == "none" or r is None:
            continue
        b.figures["train_overhead"].add(tool, r["init_s"] + r["finish_s"])
        b.figures["train_threads"].add(tool, sum(r.get("own_threads_cpu_pct", {}).values()))
        if r["background_cpu_pct"]:
            b.figures["train_background"].add(tool, sum(r["background_cpu_pct"].values()))
        before, after = results[i - 1], results[i + 1]
        if before is None or after is None:
            continue
        for figure, key in PAIRED_FIGURES:
            base = (before[key] + after[key]) / 2
            b.figures[figure].add(tool, (r[key] / base - 1) * 100)
    base_loops = [r["loop_s"] for tool, r in zip(sequence, results, strict=True) if tool == "none" and r]
    base_median = statistics.median(base_loops) if base_loops else math.nan
    b.notes.append(
        f"training: MLP 64-{b.s.train_hidden}-{b.s.train_hidden}-10 on sklearn digits, batch "
        f"{b.s.train_batch}, {b.s.train_steps} steps, torch.set_num_threads(1); loop without logging: "
        f"{base_median:.2f} s ({base_median / b.s.train_steps * 1000:.2f} ms/step, median of "
        f"{len(base_loops)}, range {min(base_loops, default=math.nan):.2f}-"
        f"{max(base_loops, default=math.nan):.2f} s); each tool run against the mean of the baseline runs "
        "just before and after it, then the median; runs forked from one host that imported torch"
    )
    if MLFLOW_SQLITE in b.tools and MLFLOW_SQLITE not in b.s.train_tools:
        b.notes.append(
            "training with MLflow on SQLite is left out (about 100 s more; its per-call cost is in the hot "
            "path rows); scripts/bench --train-mlflow-sqlite adds it"
        )


# The at-rest window runs beside these (its processes are idle: well under 1% of a core), which saves
# a minute of the 10-minute suite; everything else runs alone.
BESIDE_IDLE = ("import", "init")
IDLE_SETTLE_S = 5.0  # idle.py's own settling pause, before its window starts


def run_workloads(b: Bench, selected: list[str]) -> None:
    order = [w for w in WORKLOAD_NAMES if w in selected]
    pool = ThreadPoolExecutor(1)
    idle = None
    if "idle" in order and any(w in order for w in BESIDE_IDLE):
        order.remove("idle")
        progress("== idle (in the background, beside import and init)")
        idle = pool.submit(w_idle, b)
        time.sleep(IDLE_SETTLE_S + 3)  # the idle runs start up before anything is timed
        b.notes.append("the at-rest window ran beside the import and init workloads")
    try:
        for name in order:
            if idle is not None and name not in BESIDE_IDLE:
                idle.result()
                idle = None
            progress(f"== {name}")
            WORKLOADS[name](b)
        if idle is not None:
            idle.result()
    finally:
        pool.shutdown()


def w_webapp(b: Bench) -> None:
    if TRACKLOG not in b.tools:
        return
    if shutil.which("chromium") is None or importlib.util.find_spec("playwright") is None:
        b.notes.append("webapp skipped: Debian's chromium or playwright is not installed")
        return
    progress(f"webapp: {b.s.web_runs:,} runs and a {b.s.web_rows:,}-row run, then headless Chromium")
    with Sandbox(TRACKLOG, "webapp") as box:
        args = ["--runs", str(b.s.web_runs), "--rows", str(b.s.web_rows), "--reps", str(b.s.reps)]
        try:
            r = box.run("webapp.py", *args)
        except WorkloadFailed as exc:
            b.failed("webapp", TRACKLOG, exc)
            return
    b.keep("webapp", r)
    for fid, key in (("web_table", "table_s"), ("web_charts", "charts_s")):
        b.figures[fid].add(TRACKLOG, r[key])
    b.figures["web_sort"].add(TRACKLOG, r["sort_s"])
    b.figures["web_filter"].add(TRACKLOG, r["filter_s"])
    if MLFLOW_SQLITE not in b.tools or importlib.util.find_spec("mlflow") is None:
        return
    progress("webapp: the same data in MLflow's UI (mlflow server, SQLite)")
    with Sandbox(MLFLOW_SQLITE, "webapp") as box:
        try:
            r = box.run("webapp_mlflow.py", *args)
        except WorkloadFailed as exc:
            b.failed("webapp", MLFLOW_SQLITE, exc)
            return
    b.keep("webapp", r)
    for fid, key in (("web_table", "table_s"), ("web_charts", "charts_s")):
        if not math.isnan(r[key]):
            b.figures[fid].add(MLFLOW_SQLITE, r[key])
        else:
            b.figures[fid].notes[MLFLOW_SQLITE] = "not shown in 60 s"


WORKLOADS: dict[str, Callable[[Bench], None]] = {
    "import": w_import,
    "init": w_init,
    "hotpath": w_hotpath,
    "idle": w_idle,
    "ingest": w_ingest,
    "query": w_query,
    "training": w_training,
    "webapp": w_webapp,
}


# -- report ---------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    out = {}
    for name in (
        "tracklog",
        "grpcio",
        "protobuf",
        "SQLAlchemy",
        "psycopg",
        "wandb",
        "mlflow",
        "torch",
        "scikit-learn",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes)" if dirty else "")


def environment(command: str) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "ram_gb": round(psutil.virtual_memory().total / 1024**3, 1),
            "os": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "python": platform.python_version(),
        "packages": _versions(),
        "git": _git(),
    }


def report(b: Bench, env: dict[str, Any], elapsed: float) -> str:
    m = env["machine"]
    pkgs = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    n = b.s.hot_n
    lines = [
        f"tracklog benchmark, {env['date']}, git {env['git']}",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; {m['os']}; "
        f"load average at start {m['load_average_at_start']}, at end {m.get('load_average_at_end')}",
        f"python {env['python']}; {pkgs}",
        f"command: {env['command']}  ({elapsed:.0f} s)",
        f"repetitions: {b.s.reps} (medians; tools alternate within each repetition; import: "
        f"{b.s.import_reps})",
        "",
        table(b.figures.values(), b.tools),
        "",
    ]
    if len(b.tools) > 1 and b.figures["log_p50"].samples:
        lines.append(
            "log() rows, CPU per row, rows/s, finish(), RSS under load: N = "
            + ", ".join(f"{n[t]:,} ({COLUMN_TITLES[t]})" for t in b.tools)
            + " calls: the same loop, fewer calls for the slower tools."
        )
    if len(b.tools) > 1:
        lines += [
            "(Nx) and 'vs best': how many times better tracklog is (their cost / tracklog's, or tracklog's "
            "rate / theirs); 'vs best' is against the closest competitor.",
            "wandb: offline mode (rows/s until finish() returns; its service is wandb-core + wandb-symon). "
            "MLflow: fluent API, synchronous; 'file' is the file store, 'sqlite' a SQLite tracking URI.",
        ]
    if any(b.figures["ingest_sqlite"].samples.get(t) for t in (MLFLOW_FILE, MLFLOW_SQLITE)):
        lines.append(
            f"ingest/read for MLflow: MlflowClient.log_batch (1,000 metrics a call) of "
            f"{b.s.mlflow_ingest_rows:,} rows, then get_metric_history; its query project is made "
            "through MlflowClient (file) or inserted into its tables in one transaction (sqlite)."
        )
    lines += [f"note: {note}" for note in b.notes]
    lines += [f"skipped: {text.splitlines()[0]}" for text in b.skipped]
    lines += [f"ERROR: {text}" for text in b.errors]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small N, 1 repetition, short idle: a smoke run")
    p.add_argument("--only", help=f"comma-separated workloads: {','.join(WORKLOAD_NAMES)}")
    p.add_argument("--no-competitors", action="store_true", help="tracklog only")
    p.add_argument("--reps", type=int, help="repetitions (default 3; --quick: 1)")
    p.add_argument("--idle-seconds", type=float, help="length of the at-rest window (default 60)")
    p.add_argument(
        "--train-mlflow-sqlite",
        action="store_true",
        help="also train with MLflow on SQLite (about 100 s more)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = p.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    if args.reps:
        settings.reps = args.reps
    if args.idle_seconds:
        settings.idle_seconds = args.idle_seconds
    if args.train_mlflow_sqlite:
        settings.train_tools += (MLFLOW_SQLITE,)
    selected = list(WORKLOAD_NAMES)
    if args.only:
        selected = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = set(selected) - set(WORKLOAD_NAMES)
        if unknown:
            p.error(
                f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOAD_NAMES)}"
            )
    tools = [TRACKLOG]
    b = Bench(settings, tools)
    if not args.no_competitors:
        for tool, module in ((WANDB, "wandb"), (MLFLOW_FILE, "mlflow"), (MLFLOW_SQLITE, "mlflow")):
            if importlib.util.find_spec(module) is None:
                b.notes.append(
                    f"{tool} skipped: {module} is not importable (pip install -r bench/requirements.txt)"
                )
            else:
                tools.append(tool)
    command = "scripts/bench" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)
    )
    env = environment(command)
    _define_figures(b)
    started = time.monotonic()
    try:
        run_workloads(b, selected)
    finally:
        empty_trash()
    elapsed = time.monotonic() - started
    env["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = report(b, env, elapsed)
    print(text, flush=True)
    results = {
        **env,
        "elapsed_s": elapsed,
        "workloads": selected,
        "tools": b.tools,
        "settings": asdict(settings),
        "figures": {fid: fig.to_json() for fid, fig in b.figures.items() if fig.samples},
        "notes": b.notes,
        "skipped": b.skipped,
        "errors": b.errors,
        "raw": b.raw,
        "table": text,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=".results.")
    with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=1, allow_nan=True)
    os.replace(tmp, args.out)
    print(f"\nwrote {os.path.relpath(args.out)}", file=sys.stderr)
    return 1 if b.errors else 0


if __name__ == "__main__":
    sys.exit(main())
