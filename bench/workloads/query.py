"""Query: a project of many small runs, listed and read back.

``--phase populate`` creates the runs (tracklog: straight through the store server's Ingest RPC, one
request per run: RunStart with a config, 10 history rows of 3 keys, Finish; MLflow: create_run,
log_batch, set_terminated through MlflowClient). ``--phase read`` runs in a fresh process per
repetition: list every run of the project (tracklog: ``Api().runs("bench/query")``; MLflow:
``MlflowClient.search_runs`` page by page) and read a few runs back (the run and its history).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _common as c

HISTORY_ROWS = 10
HISTORY_KEYS = ("loss", "acc", "lr")
READ_BACK = 5


def _populate_tracklog(server: str, runs: int) -> list[str]:
    import grpc

    from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc

    paths: list[str] = []
    with grpc.insecure_channel(server) as channel:
        stub = store_pb2_grpc.StoreStub(channel)
        for i in range(runs):
            run_id = f"q{i:06d}"
            ref = records_pb2.RunRef(entity="bench", project="query", id=run_id)
            now = time.time()
            config = json.dumps({"lr": 10 ** -(1 + i % 4), "seed": i, "model": "mlp"})
            start = records_pb2.RunStart(ref=ref, name=f"run-{i}", start_time=now, config_json=config)
            batch = records_pb2.HistoryBatch(steps=_packed("q", range(HISTORY_ROWS)))
            batch.timestamps = _packed("d", (now + s for s in range(HISTORY_ROWS)))
            for k, key in enumerate(HISTORY_KEYS):
                values = _packed("d", (1.0 / (s + 1 + k) for s in range(HISTORY_ROWS)))
                batch.columns.add(
                    key=key, type=records_pb2.COLUMN_TYPE_FLOAT, steps=batch.steps, values=values
                )
            finish = records_pb2.Finish(state=records_pb2.RUN_STATE_FINISHED, end_time=now + HISTORY_ROWS)
            records = [
                records_pb2.Record(start=start),
                records_pb2.Record(history=batch.SerializeToString()),
                records_pb2.Record(finish=finish),
            ]
            frames = [
                records_pb2.Frame(seq=seq, record=r.SerializeToString()) for seq, r in enumerate(records, 1)
            ]
            response = stub.Ingest(store_pb2.IngestRequest(ref=ref, frames=frames), timeout=60)
            if not response.accepted:
                raise SystemExit(f"Ingest refused run {run_id}")
            paths.append(f"bench/query/{run_id}")
    return paths


def _packed(code: str, values: Any) -> bytes:
    from array import array

    return array(code, values).tobytes()


def _populate_mlflow(uri: str, runs: int) -> list[str]:
    """The file store through MlflowClient; SQLite straight into MLflow's own tables (its SQLAlchemy
    models), in one transaction: its client takes three transactions and about 40 ms per run here."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(uri)
    experiment = client.create_experiment("bench-query")
    if uri.startswith("sqlite:"):
        return [experiment, *_insert_mlflow_sql(client, experiment, runs)]
    ids: list[str] = []
    for i in range(runs):
        run = client.create_run(experiment, run_name=f"run-{i}")
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, 1.0 / (s + 1 + k), now + s, s)
            for s in range(HISTORY_ROWS)
            for k, key in enumerate(HISTORY_KEYS)
        ]
        params = [Param(name, value) for name, value in _params(i).items()]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    return [experiment, *ids]


def _params(i: int) -> dict[str, str]:
    return {"lr": str(10 ** -(1 + i % 4)), "seed": str(i), "model": "mlp"}


def _insert_mlflow_sql(client: Any, experiment: str, runs: int) -> list[str]:
    import uuid

    from mlflow.store.tracking.dbmodels import models as m
    from sqlalchemy import insert

    store = client._tracking_client.store
    artifact_root = client.get_experiment(experiment).artifact_location
    now = int(time.time() * 1000)
    rows: dict[Any, list[dict[str, Any]]] = {
        m.SqlRun: [],
        m.SqlTag: [],
        m.SqlParam: [],
        m.SqlMetric: [],
        m.SqlLatestMetric: [],
    }
    for i in range(runs):
        rid = uuid.uuid4().hex
        name = f"run-{i}"
        rows[m.SqlRun].append(
            {
                "run_uuid": rid,
                "name": name,
                "source_type": "LOCAL",
                "source_name": "bench",
                "entry_point_name": "",
                "user_id": "bench",
                "status": "FINISHED",
                "start_time": now,
                "end_time": now + HISTORY_ROWS,
                "source_version": "",
                "lifecycle_stage": "active",
                "artifact_uri": f"{artifact_root}/{rid}/artifacts",
                "experiment_id": int(experiment),
            }
        )
        rows[m.SqlTag] += [
            {"key": "mlflow.runName", "value": name, "run_uuid": rid},
            {"key": "mlflow.user", "value": "bench", "run_uuid": rid},
        ]
        rows[m.SqlParam] += [{"key": k, "value": v, "run_uuid": rid} for k, v in _params(i).items()]
        for k, key in enumerate(HISTORY_KEYS):
            points = [
                {"key": key, "value": 1.0 / (s + 1 + k), "timestamp": now + s, "step": s}
                | {"is_nan": False, "run_uuid": rid}
                for s in range(HISTORY_ROWS)
            ]
            rows[m.SqlMetric] += points
            rows[m.SqlLatestMetric].append(points[-1])
    with store.ManagedSessionMaker() as session:
        for model, values in rows.items():
            session.execute(insert(model.__table__), values)
    return [row["run_uuid"] for row in rows[m.SqlRun]]


def _read_tracklog(server: str, paths: list[str], runs: int) -> dict[str, Any]:
    import tracklog

    t0 = time.perf_counter()
    api = tracklog.Api(server=server)
    listed = list(api.runs("bench/query", per_page=1000))  # every run, a page at a time
    t1 = time.perf_counter()
    if len(listed) != runs:
        raise SystemExit(f"Api().runs listed {len(listed)} runs, expected {runs}")
    per_run = []
    for path in paths:
        t2 = time.perf_counter()
        run = api.run(path)
        rows = run.history(pandas=False)
        per_run.append(time.perf_counter() - t2)
        if len(rows) != HISTORY_ROWS or run.state != "finished":
            raise SystemExit(f"{path}: {len(rows)} rows, state {run.state}")
    api.close()
    return {"list_s": t1 - t0, "listed": len(listed), "read_run_s": statistics.median(per_run)}


def _read_mlflow(uri: str, ids: list[str], runs: int) -> dict[str, Any]:
    from mlflow import MlflowClient

    experiment, *sample = ids
    t0 = time.perf_counter()
    client = MlflowClient(uri)
    listed: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment], max_results=1000, page_token=token)
        listed.extend(page)
        token = page.token
        if not token:
            break
    t1 = time.perf_counter()
    if len(listed) != runs:
        raise SystemExit(f"search_runs listed {len(listed)} runs, expected {runs}")
    per_run = []
    for run_id in sample:
        t2 = time.perf_counter()
        client.get_run(run_id)
        rows = [client.get_metric_history(run_id, key) for key in HISTORY_KEYS]
        per_run.append(time.perf_counter() - t2)
        if any(len(r) != HISTORY_ROWS for r in rows):
            raise SystemExit(f"{run_id}: rows missing")
    return {"list_s": t1 - t0, "listed": len(listed), "read_run_s": statistics.median(per_run)}


def main() -> int:
    p = c.parser(__doc__ or "")
    p.add_argument("--tool", required=True, choices=["tracklog", "mlflow-file", "mlflow-sqlite"])
    p.add_argument("--phase", required=True, choices=["populate", "read"])
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--server", help="tracklog: host:port of the store server")
    p.add_argument("--paths", type=Path, required=True, help="populate writes, read reads the run list")
    args = p.parse_args()
    out: dict[str, Any] = {"tool": args.tool, "phase": args.phase, "runs": args.runs}
    if args.phase == "populate":
        t0 = time.perf_counter()
        if args.tool == "tracklog":
            ids = _populate_tracklog(args.server, args.runs)
        else:
            ids = _populate_mlflow(os.environ["MLFLOW_TRACKING_URI"], args.runs)
        out["populate_s"] = time.perf_counter() - t0
        out["runs_per_s"] = args.runs / out["populate_s"]
        args.paths.write_text(json.dumps(ids))
    else:
        ids = json.loads(args.paths.read_text())
        if args.tool == "tracklog":
            step = max(1, len(ids) // READ_BACK)
            out.update(_read_tracklog(args.server, ids[::step][:READ_BACK], args.runs))
        else:
            experiment, *run_ids = ids
            step = max(1, len(run_ids) // READ_BACK)
            out.update(
                _read_mlflow(
                    os.environ["MLFLOW_TRACKING_URI"], [experiment, *run_ids[::step][:READ_BACK]], args.runs
                )
            )
    c.write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
