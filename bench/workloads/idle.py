"""At rest: one run attached and idle (no log() calls) for ``--seconds``.

After a settling pause (so that start-up work is not counted), the CPU of the background processes
(tracklog: daemon and local store server; wandb: its service and helpers) is read before and after the
window, and their RSS once a second; CPU percent is of one core.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import _common as c
import psutil


def _watch(pids: dict[str, int], seconds: float) -> dict[str, Any]:
    cpu_a = {role: c.cpu_seconds(pid, with_children=True) for role, pid in pids.items()}
    t_a = time.monotonic()
    peak = dict.fromkeys(pids, 0.0)
    deadline = t_a + seconds
    while True:
        for role, pid in pids.items():
            value = c.rss_mb(pid)
            if not math.isnan(value):
                peak[role] = max(peak[role], value)
        now = time.monotonic()
        if now >= deadline:
            break
        time.sleep(min(1.0, deadline - now))
    wall = time.monotonic() - t_a
    cpu_b = {role: c.cpu_seconds(pid, with_children=True) for role, pid in pids.items()}
    return {
        "window_s": wall,
        "cpu_pct": {role: (cpu_b[role] - cpu_a[role]) / wall * 100 for role in pids},
        "rss_mb": peak,
    }


def main() -> int:
    p = c.parser(__doc__ or "")
    p.add_argument("--tool", required=True, choices=["tracklog", "wandb"])
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--settle", type=float, default=5.0)
    args = p.parse_args()
    out: dict[str, Any] = {"tool": args.tool, "seconds": args.seconds}
    if args.tool == "tracklog":
        import tracklog

        run = tracklog.init(project="bench-idle")
        time.sleep(args.settle)  # the daemon and store server finish starting; not part of rest
        pids = c.tracklog_pids(Path(os.environ["TRACKLOG_HOME"]))
        out.update(_watch(pids, args.seconds))
        run.finish()
    else:
        import wandb

        wrun = wandb.init(project="bench-idle", mode="offline", dir=str(args.workdir))
        time.sleep(args.settle)
        procs: dict[str, psutil.Process] = {}
        for proc in c.descendants():
            procs.setdefault(proc.name(), proc)
        pids = {name: proc.pid for name, proc in procs.items()}
        out.update(_watch(pids, args.seconds))
        # The daemon column is wandb's service (wandb-core); its helpers are listed beside it.
        out["cpu_pct"]["daemon"] = sum(out["cpu_pct"].values())
        out["rss_mb"]["daemon"] = sum(out["rss_mb"].values())
        wrun.finish()
        wandb.teardown()
    c.write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
