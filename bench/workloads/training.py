"""A real training loop: a small PyTorch MLP on scikit-learn's digits (bundled, no download), on the
CPU with one thread (torch.set_num_threads(1)), a fixed number of steps, logging the loss and the batch
accuracy every step. ``--tool none`` is the baseline: it computes the same two numbers and logs nothing.

The figure is the wall time of the training loop (init() before it and finish() after it are timed
separately). ``--host`` runs it as a fork host (bench/forkhost.py): torch is imported and the data set
loaded once, and each run is a child forked from it, which imports the tool itself. For tracklog the
daemon is started before the run, as it is on a machine where runs were started before; the rows are
checked to be in the store afterwards (not timed).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as c

Log = Callable[[int, float, float], None]
Prepared = tuple[Any, Any, Any]  # torch, features, labels


def _no_check() -> None:
    return None


def _tracker(tool: str, workdir: Any, steps: int) -> tuple[Log, Callable[[], Any], Callable[[], None]]:
    """(log(step, loss, acc), finish(), check()) for the tool; the baseline's log does nothing."""
    if tool == "none":
        return (lambda step, loss, acc: None), _no_check, _no_check
    if tool == "tracklog":
        import tracklog

        tracklog.Api().close()  # start the daemon and the store server before the run
        run = tracklog.init(project="bench-training", config={"steps": steps})

        def check() -> None:
            api = tracklog.Api()
            ok, view = c.wait_for_rows(api, run.path, steps, timeout=300.0)
            api.close()
            if not ok:
                raise SystemExit(f"the store holds {getattr(view, 'history_rows', None)} of {steps} rows")

        return (lambda step, loss, acc: run.log({"loss": loss, "acc": acc})), run.finish, check
    if tool == "wandb":
        import wandb

        wrun = wandb.init(project="bench-training", mode="offline", dir=str(workdir), config={"steps": steps})
        return (lambda step, loss, acc: wrun.log({"loss": loss, "acc": acc})), wrun.finish, _no_check
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.start_run(run_name="bench-training")

    def log(step: int, loss: float, acc: float) -> None:
        mlflow.log_metrics({"loss": loss, "acc": acc}, step=step)

    return log, mlflow.end_run, _no_check


def _background(tool: str) -> dict[str, int]:
    """The processes that work for the run beside the training process: tracklog's daemon and store
    server, wandb's service and its helpers."""
    if tool == "tracklog":
        return c.tracklog_pids(Path(os.environ["TRACKLOG_HOME"]))
    if tool == "wandb":
        return {proc.name(): proc.pid for proc in c.descendants()}
    return {}


def _thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process, by native id (Linux: /proc/self/task), else {}."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        out[int(task)] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


class _GcStats:
    """Time spent in the cyclic garbage collector, and collections per generation, while it runs:
    objects the tool allocates on any thread make collections come sooner, and a collection of an
    old generation walks every object torch has created."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def stop(self) -> None:
        gc.callbacks.remove(self._callback)


def _digits() -> tuple[Any, Any]:
    """scikit-learn's digits (1,797 8x8 images), read from the CSV it bundles, as its load_digits
    does, without importing scikit-learn: that import (about 2 s here) would be paid by every run."""
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-learn is not installed: its digits data set is the training data")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1].astype(np.int64)


def prepare() -> Prepared:
    """torch imported and set up, the data set loaded, and one tiny training step taken: what every
    run shares (and a fork host pays once, see bench/forkhost.py). The step is there because torch
    initializes itself on its first operation, which takes about 1 s here. No thread of this
    process's own is started (numpy's OpenBLAS keeps a worker, which it shuts down at a fork)."""
    import torch

    torch.set_num_threads(1)
    features, labels = _digits()
    x_all = torch.tensor(features / 16.0, dtype=torch.float32)
    y_all = torch.tensor(labels)
    tiny = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    optimizer = torch.optim.SGD(tiny.parameters(), lr=0.05, momentum=0.9)
    torch.nn.CrossEntropyLoss()(tiny(x_all[:4]), y_all[:4]).backward()
    optimizer.step()
    return torch, x_all, y_all


def main(argv: list[str] | None = None, prepared: Prepared | None = None) -> int:
    p = c.parser(__doc__ or "")
    p.add_argument(
        "--tool", required=True, choices=["none", "tracklog", "wandb", "mlflow-file", "mlflow-sqlite"]
    )
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args(argv)

    torch, x_all, y_all = prepared if prepared is not None else prepare()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, args.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(args.hidden, args.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(args.hidden, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, bs = len(x_all), args.batch

    t0 = time.perf_counter()
    log, finish, check = _tracker(args.tool, args.workdir, args.steps)
    helpers = _background(args.tool)
    cpu_a = {name: c.cpu_seconds(pid, with_children=True) for name, pid in helpers.items()}
    threads_a = _thread_cpu()
    gc_stats = _GcStats()
    ends = [0.0] * args.steps  # each step's end, for the median step time
    clock = time.perf_counter
    t1, p1 = clock(), time.process_time()
    loss_value = acc_value = 0.0
    for step in range(args.steps):
        i = (step * bs) % (n - bs)
        xb, yb = x_all[i : i + bs], y_all[i : i + bs]
        out = model(xb)
        loss = loss_fn(out, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        acc_value = (out.argmax(1) == yb).float().mean().item()
        log(step, loss_value, acc_value)
        ends[step] = clock()
    t2, p2 = time.perf_counter(), time.process_time()
    gc_stats.stop()
    step_s = [end - start for start, end in zip([t1, *ends], ends, strict=False)]
    threads_b = _thread_cpu()
    # The tool's own threads in this process (a sender, gRPC's, a console reader ...): every thread
    # but the one running the loop. Threads that ended during the loop are not counted.
    main = threading.get_native_id()  # this thread (main_thread().native_id is stale in a forked child)
    names = {t.native_id: t.name for t in threading.enumerate()}
    side = {
        f"{names.get(tid, 'native')}/{tid}": cpu - threads_a.get(tid, 0.0)
        for tid, cpu in threads_b.items()
        if tid != main and cpu - threads_a.get(tid, 0.0) > 0
    }
    cpu_b = {name: c.cpu_seconds(pid, with_children=True) for name, pid in helpers.items()}
    finish()
    t3 = time.perf_counter()
    check()
    c.write_result(
        args.out,
        {
            "tool": args.tool,
            "steps": args.steps,
            "hidden": args.hidden,
            "batch": args.batch,
            "threads": torch.get_num_threads(),
            "init_s": t1 - t0,
            "loop_s": t2 - t1,
            "step_ms": (t2 - t1) / args.steps * 1000,
            # Robust to a burst of load from elsewhere on the machine, which the total is not.
            "step_median_ms": statistics.median(step_s) * 1000,
            "finish_s": t3 - t2,
            "loop_cpu_s": p2 - p1,
            "train_cpu_pct": (p2 - p1) / (t2 - t1) * 100,
            "background_cpu_pct": {name: (cpu_b[name] - cpu_a[name]) / (t2 - t1) * 100 for name in helpers},
            "own_threads_cpu_pct": {name: cpu / (t2 - t1) * 100 for name, cpu in sorted(side.items())},
            "gc_s": gc_stats.seconds,
            "gc_collections": gc_stats.collections,
            "final_loss": loss_value,
            "final_acc": acc_value,
        },
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--host"]:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        import forkhost

        sys.exit(forkhost.serve(main, prepare()))
    sys.exit(main())
