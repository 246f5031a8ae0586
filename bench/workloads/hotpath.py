"""Hot path: N calls of ``log()`` with 10 float scalars, each timed with perf_counter_ns.

Figures: caller wall time per call (p50/p99/max), CPU of the training process and of the processes it
talks to (tracklog: daemon and local store server; wandb: its service and helpers) from just after
init() until the data is stored, ``finish()`` time, and rows/s end to end: for tracklog until every
row is queryable in the store (Api().run(path).history_rows == N and state finished), for the others
until ``finish()`` returns (their data is then on local disk; nothing further to wait for).

For tracklog the daemon and the store server are started first (through ``Api()``) so that their
start-up does not count as per-row work; the run then asserts that every row reached the store.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as c


def _reference_append(n: int) -> dict[str, float]:
    """What a plain ``list.append(dict)`` costs when timed the same way: the floor of a log() call."""
    sink: list[dict[str, float]] = []
    append = sink.append
    pc = time.perf_counter_ns
    times = array("q", bytes(8 * n))
    row = c.row
    for i in range(n):
        d = row(i)
        t0 = pc()
        append(d)
        times[i] = pc() - t0
    return c.call_stats_us(times)


def _loop(log: Callable[[dict[str, float]], Any], n: int) -> array[int]:
    pc = time.perf_counter_ns
    times = array("q", bytes(8 * n))
    row = c.row
    for i in range(n):
        d = row(i)
        t0 = pc()
        log(d)
        times[i] = pc() - t0
    return times


def _mlflow_loop(log_metrics: Callable[..., Any], n: int) -> array[int]:
    pc = time.perf_counter_ns
    times = array("q", bytes(8 * n))
    row = c.row
    for i in range(n):
        d = row(i)
        t0 = pc()
        log_metrics(d, step=i)
        times[i] = pc() - t0
    return times


def run_tracklog(n: int, out: dict[str, Any]) -> bool:
    import tracklog

    home = Path(os.environ["TRACKLOG_HOME"])
    api = tracklog.Api()  # starts the daemon and the local store server and waits for both
    pids = c.tracklog_pids(home)
    if set(pids) != {"daemon", "server"}:
        raise SystemExit(f"daemon.json/server.json missing in {home}: {pids}")
    out["pids"] = pids
    cpu_a = {role: c.cpu_seconds(pid) for role, pid in pids.items()}
    t_a, p_a = time.perf_counter(), time.process_time()
    run = tracklog.init(project="bench-hotpath", config={"n": n})
    t_b, p_b = time.perf_counter(), time.process_time()
    cpu_b = {role: c.cpu_seconds(pid) for role, pid in pids.items()}
    times = _loop(run.log, n)
    t_loop = time.perf_counter()
    run.finish()
    t_c, p_c = time.perf_counter(), time.process_time()
    ok, view = c.wait_for_rows(api, run.path, n, timeout=600.0)
    t_d = time.perf_counter()
    cpu_d = {role: c.cpu_seconds(pid) for role, pid in pids.items()}
    api.close()
    out.update(
        path=run.path,
        init_s=t_b - t_a,
        loop_s=t_loop - t_b,
        finish_s=t_c - t_loop,
        e2e_s=t_d - t_b,
        lag_s=t_d - t_loop,
        rows_per_s=n / (t_d - t_b),
        e2e_until="every row queryable in the store",
        calls=c.call_stats_us(times),
        cpu_s_whole_run={
            "train": p_c - p_a,
            "daemon": cpu_d["daemon"] - cpu_a["daemon"],
            "server": cpu_d["server"] - cpu_a["server"],
        },
        cpu_s_logging={
            "train": p_c - p_b,
            "daemon": cpu_d["daemon"] - cpu_b["daemon"],
            "server": cpu_d["server"] - cpu_b["server"],
        },
        stored_rows=None if view is None else view.history_rows,
        stored_state=None if view is None else view.state,
    )
    if not ok:
        out["error"] = (
            f"after the run, the store holds {out['stored_rows']} rows in state {out['stored_state']!r} "
            f"for {run.path}; expected {n} rows, finished"
        )
    return ok


def run_wandb(n: int, out: dict[str, Any], workdir: Path) -> bool:
    import wandb

    t_a, p_a = time.perf_counter(), time.process_time()
    run = wandb.init(project="bench-hotpath", mode="offline", dir=str(workdir), config={"n": n})
    t_b, p_b = time.perf_counter(), time.process_time()
    services = c.descendants()  # wandb-core and its system monitor
    out["services"] = [proc.name() for proc in services]
    cpu_b = c.tree_cpu_seconds(services)
    times = _loop(run.log, n)
    t_loop = time.perf_counter()
    run.finish()
    t_c, p_c = time.perf_counter(), time.process_time()
    # After finish() the service has written everything; count it (and helpers it reaped) now.
    cpu_c = c.tree_cpu_seconds(c.descendants())
    wandb.teardown()
    out.update(
        init_s=t_b - t_a,
        loop_s=t_loop - t_b,
        finish_s=t_c - t_loop,
        e2e_s=t_c - t_b,
        lag_s=t_c - t_loop,
        rows_per_s=n / (t_c - t_b),
        e2e_until="finish() returned (offline: rows are in the local .wandb file)",
        calls=c.call_stats_us(times),
        cpu_s_whole_run={"train": p_c - p_a, "service": cpu_c},
        cpu_s_logging={"train": p_c - p_b, "service": cpu_c - cpu_b},
    )
    return True


def run_mlflow(n: int, out: dict[str, Any], uri: str) -> bool:
    import mlflow

    mlflow.set_tracking_uri(uri)
    t_a, p_a = time.perf_counter(), time.process_time()
    mlflow.start_run(run_name="bench-hotpath")
    t_b, p_b = time.perf_counter(), time.process_time()
    times = _mlflow_loop(mlflow.log_metrics, n)
    t_loop = time.perf_counter()
    mlflow.end_run()
    t_c, p_c = time.perf_counter(), time.process_time()
    out.update(
        init_s=t_b - t_a,
        loop_s=t_loop - t_b,
        finish_s=t_c - t_loop,
        e2e_s=t_c - t_b,
        lag_s=t_c - t_loop,
        rows_per_s=n / (t_c - t_b),
        e2e_until="end_run() returned (each log_metrics call writes synchronously)",
        calls=c.call_stats_us(times),
        cpu_s_whole_run={"train": p_c - p_a},
        cpu_s_logging={"train": p_c - p_b},
    )
    return True


def main() -> int:
    p = c.parser(__doc__ or "")
    p.add_argument("--tool", required=True, choices=["tracklog", "wandb", "mlflow-file", "mlflow-sqlite"])
    p.add_argument("--n", type=int, required=True)
    args = p.parse_args()
    out: dict[str, Any] = {"tool": args.tool, "n": args.n, "timer_floor_ns": c.timer_floor_ns()}
    if args.tool == "tracklog":
        out["reference_append"] = _reference_append(min(args.n, 100_000))
        ok = run_tracklog(args.n, out)
    elif args.tool == "wandb":
        ok = run_wandb(args.n, out, args.workdir)
    else:
        ok = run_mlflow(args.n, out, os.environ["MLFLOW_TRACKING_URI"])
    logging_cpu = out["cpu_s_logging"]
    out["cpu_us_per_row"] = {k: v / args.n * 1e6 for k, v in logging_cpu.items()}
    out["cpu_us_per_row"]["total"] = sum(v for v in logging_cpu.values() if not math.isnan(v)) / args.n * 1e6
    out["maxrss_train_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    c.write_result(args.out, out)
    if not ok:
        print(f"error: {out.get('error')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
