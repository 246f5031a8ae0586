"""``init()`` cold and warm, in a fresh process: one row is logged and the run finished.

cold: nothing was set up before (tracklog: a fresh TRACKLOG_HOME, so init() starts the daemon;
wandb: a fresh directory; MLflow: a new file store or SQLite database, which init creates).
warm: a second process on the same home/directory/database (tracklog: the daemon started by the cold
process is still running). Each process is fresh, so the interpreter's own start is not counted.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import _common as c


def main() -> int:
    p = c.parser(__doc__ or "")
    p.add_argument("--tool", required=True, choices=["tracklog", "wandb", "mlflow-file", "mlflow-sqlite"])
    p.add_argument("--phase", required=True, choices=["cold", "warm"])
    args = p.parse_args()
    out: dict[str, Any] = {"tool": args.tool, "phase": args.phase}
    t0 = time.perf_counter()
    if args.tool == "tracklog":
        import tracklog

        t1 = time.perf_counter()
        run = tracklog.init(project="bench-startup")
        t2 = time.perf_counter()
        run.log(c.row(0))
        t3 = time.perf_counter()
        run.finish()
        t4 = time.perf_counter()
    elif args.tool == "wandb":
        import wandb

        t1 = time.perf_counter()
        wrun = wandb.init(project="bench-startup", mode="offline", dir=str(args.workdir))
        t2 = time.perf_counter()
        wrun.log(c.row(0))
        t3 = time.perf_counter()
        wrun.finish()
        t4 = time.perf_counter()
    else:
        import mlflow

        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        t1 = time.perf_counter()
        mlflow.start_run(run_name="bench-startup")
        t2 = time.perf_counter()
        mlflow.log_metrics(c.row(0), step=0)
        t3 = time.perf_counter()
        mlflow.end_run()
        t4 = time.perf_counter()
    out.update(import_s=t1 - t0, init_s=t2 - t1, finish_s=t4 - t3)
    c.write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
