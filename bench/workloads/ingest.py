"""Ingest into the store, and reading one key of the run back.

tracklog: a store server of its own (SQLite file or a temporary PostgreSQL database) is driven
directly through its Ingest RPC with pre-encoded requests, each of several frames of a 1,000-row,
10-key HistoryBatch (what a daemon's sync loop sends), one request in flight at a time. Encoding
happens before the clock starts. Then one key of the run is read back, through ``Api().run(path)
.scan_history(keys=["k0"])`` (rows as dicts) and through the raw History RPC.

MLflow (``--tool mlflow-sqlite`` / ``mlflow-file``): the closest equivalent is ``MlflowClient.log_batch``
with 1,000 metrics per call (its limit), then ``get_metric_history(run, "k0")``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import _common as c


def _requests(rows: int, frame_rows: int, per_request: int, run_id: str) -> tuple[Any, list[bytes]]:
    import numpy as np

    from tracklog.v1 import records_pb2, store_pb2

    ref = records_pb2.RunRef(entity="bench", project="ingest", id=run_id)
    start_time = time.time()
    start = records_pb2.Record(
        start=records_pb2.RunStart(ref=ref, name="ingest", start_time=start_time, config_json="{}")
    )
    rng = np.random.default_rng(0)
    pending = [records_pb2.Frame(seq=1, record=start.SerializeToString())]
    out: list[bytes] = []
    seq = 2
    for first in range(0, rows, frame_rows):
        steps = np.arange(first, min(rows, first + frame_rows), dtype="<i8")
        steps_bytes = steps.tobytes()
        batch = records_pb2.HistoryBatch(
            steps=steps_bytes, timestamps=(start_time + steps * 0.001).astype("<f8").tobytes()
        )
        for key in c.KEYS:
            values = rng.standard_normal(len(steps)).astype("<f8").tobytes()
            # As the SDK encodes a key logged in every row: the batch's steps, not a copy of them.
            batch.columns.add(key=key, type=records_pb2.COLUMN_TYPE_FLOAT, values=values, all_rows=True)
        record = records_pb2.Record(history=batch.SerializeToString())
        pending.append(records_pb2.Frame(seq=seq, record=record.SerializeToString()))
        seq += 1
        if len(pending) >= per_request:
            out.append(store_pb2.IngestRequest(ref=ref, frames=pending).SerializeToString())
            pending = []
    finish = records_pb2.Record(
        finish=records_pb2.Finish(state=records_pb2.RUN_STATE_FINISHED, end_time=time.time())
    )
    pending.append(records_pb2.Frame(seq=seq, record=finish.SerializeToString()))
    out.append(store_pb2.IngestRequest(ref=ref, frames=pending).SerializeToString())
    return ref, out


def run_tracklog(args: Any, out: dict[str, Any]) -> bool:
    import grpc

    import tracklog
    from tracklog.v1 import store_pb2, store_pb2_grpc

    pg = c.PostgresDatabase() if args.backend == "postgres" else None
    db_url = pg.url if pg is not None else f"sqlite:///{args.workdir / 'store.db'}"
    server = None
    try:
        server = c.StoreServerProcess(db_url, args.workdir)
        run_id = "ingest1m"
        ref, requests = _requests(args.rows, args.frame_rows, args.frames_per_request, run_id)
        options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
        with grpc.insecure_channel(server.address, options=options) as channel:
            ingest = channel.unary_unary(
                "/tracklog.v1.Store/Ingest",
                request_serializer=None,  # the requests are encoded already
                response_deserializer=store_pb2.IngestResponse.FromString,
            )
            cpu_a = c.cpu_seconds(server.pid)
            t0 = time.perf_counter()
            for request in requests:
                response = ingest(request, timeout=300)
                if not response.accepted:
                    raise SystemExit(f"Ingest refused a request: applied_through={response.applied_through}")
            t1 = time.perf_counter()
            cpu_b = c.cpu_seconds(server.pid)
            out.update(
                ingest_s=t1 - t0,
                rows_per_s=args.rows / (t1 - t0),
                requests=len(requests),
                server_cpu_us_per_row=(cpu_b - cpu_a) / args.rows * 1e6,
                server_rss_mb=c.rss_mb(server.pid),
            )
            stub = store_pb2_grpc.StoreStub(channel)
            t2 = time.perf_counter()
            raw_rows = 0
            for page in stub.History(store_pb2.HistoryRequest(ref=ref, keys=["k0"]), timeout=600):
                raw_rows += len(page.steps) // 8
            t3 = time.perf_counter()
        api = tracklog.Api(server=server.address)
        view = api.run(f"bench/ingest/{run_id}")
        t4 = time.perf_counter()
        rows = sum(1 for _ in view.scan_history(keys=["k0"]))
        t5 = time.perf_counter()
        api.close()
        out.update(
            stored_rows=view.history_rows,
            stored_state=view.state,
            read_raw_s=t3 - t2,
            read_raw_rows=raw_rows,
            read_scan_s=t5 - t4,
            read_scan_rows=rows,
        )
        ok = view.history_rows == args.rows and rows == args.rows == raw_rows and view.state == "finished"
        if not ok:
            out["error"] = f"stored {view.history_rows} rows ({view.state}), read {rows}/{raw_rows}"
        return ok
    finally:
        if server is not None:
            server.close()
        if pg is not None:
            pg.close()


def run_mlflow(args: Any, out: dict[str, Any]) -> bool:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run_id = client.create_run("0").info.run_id  # creates the store (tables) before the clock starts
    now = int(time.time() * 1000)
    per_call = 1000 // len(c.KEYS)  # log_batch takes at most 1,000 metrics
    batches = [
        [
            Metric(key, float(step) + i, now + step, step)
            for step in range(first, min(args.rows, first + per_call))
            for i, key in enumerate(c.KEYS)
        ]
        for first in range(0, args.rows, per_call)
    ]
    t0 = time.perf_counter()
    for metrics in batches:
        client.log_batch(run_id, metrics=metrics)
    t1 = time.perf_counter()
    client.set_terminated(run_id)
    t2 = time.perf_counter()
    history = client.get_metric_history(run_id, "k0")
    t3 = time.perf_counter()
    out.update(
        ingest_s=t1 - t0,
        rows_per_s=args.rows / (t1 - t0),
        requests=len(batches),
        read_scan_s=t3 - t2,
        read_scan_rows=len(history),
    )
    return bool(len(history) == args.rows)


def main() -> int:
    p = c.parser(__doc__ or "")
    p.add_argument("--tool", required=True, choices=["tracklog", "mlflow-file", "mlflow-sqlite"])
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--frame-rows", type=int, default=1000)
    p.add_argument("--frames-per-request", type=int, default=10)
    args = p.parse_args()
    out: dict[str, Any] = {"tool": args.tool, "backend": args.backend, "rows": args.rows}
    if args.tool == "tracklog":
        out.update(frame_rows=args.frame_rows, frames_per_request=args.frames_per_request)
        ok = run_tracklog(args, out)
    else:
        ok = run_mlflow(args, out)
    c.write_result(args.out, out)
    if not ok:
        print(f"error: {out.get('error', 'rows missing')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
