"""Search: the first page of a filtered, sorted query and a group-by on a project of 10,000 runs with
20 config and 20 summary keys each, on SQLite and PostgreSQL; MLflow's ``search_runs`` on the same
data beside it.

tracklog: the runs are written in bulk as ingest leaves them (run rows, metric summaries of the 20
logged keys, the searchable values derived by the store's own code); on PostgreSQL then ``VACUUM
ANALYZE`` (what autovacuum does soon after a bulk load; timed queries racing it would measure the
vacuum); on SQLite nothing more: the store server analyzes its search tables itself at start, as it
would for any user's store. Then a store server process answers
``Api().runs("bench/search", filters=..., order="-summary.s0", per_page=50)[0]`` (a new query each
time: the first page, its total included) and ``.group_by("config.c3")``, timed from the client.
MLflow: the same values as params (config) and metrics (summary), written straight into its tables
(its client takes ~40 ms per run), then ``search_runs`` with the same filter and order, 50 results.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from typing import Any

import _common as c

KEYS = 20
OPTIMIZERS = ("adam", "sgd", "rmsprop")
# The same question to both tools: finished runs using adam whose s2 is below 0.8, best s0 first.
FILTERS = {"state": "finished", "config.c3": "adam", "summary.s2": {"$lt": 0.8}}
ORDER = "-summary.s0"
MLFLOW_FILTER = "attributes.status = 'FINISHED' and params.c3 = 'adam' and metrics.s2 < 0.8"
MLFLOW_ORDER = ["metrics.s0 DESC"]
PER_PAGE = 50


def project(runs: int, seed: int = 11) -> list[tuple[dict[str, Any], dict[str, float]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(runs):
        config: dict[str, Any] = {f"c{i}": round(rng.uniform(0, 1), 4) for i in range(KEYS)}
        config["c3"] = rng.choice(OPTIMIZERS)
        summary = {f"s{i}": rng.uniform(0, 1) for i in range(KEYS)}
        out.append((config, summary))
    return out


def expected_total(data: list[tuple[dict[str, Any], dict[str, float]]]) -> int:
    return sum(1 for config, summary in data if config["c3"] == "adam" and summary["s2"] < 0.8)


def _timed(fn: Any, reps: int) -> list[float]:
    fn()  # warm: connections, caches
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _populate_tracklog(db_url: str, data: list[tuple[dict[str, Any], dict[str, float]]]) -> None:
    """Writes the runs as ingest would have left them (run rows, metric summaries, searchable
    values derived by the store's own ``_values``), in bulk: ingesting 10,000 runs one request at a
    time takes minutes on a shared machine, and how the rows got there does not change a query."""
    from sqlalchemy import Table, insert, select

    from tracklog._history import dumps
    from tracklog_server import SqlAlchemyStore
    from tracklog_server.storage import _values
    from tracklog_server.storage._models import MetricSummaryRow, RunRow, RunValueRow

    store = SqlAlchemyStore(db_url)
    runs = RunRow.__table__
    assert isinstance(runs, Table)
    rows = [
        {
            "entity": "bench", "project": "search", "run_id": f"s{n:05d}", "name": f"run-{n}", "notes": "",
            "tags": [], "run_group": "", "job_type": "", "state": "finished", "exit_code": 0,
            "finish_reason": "", "created_at": 1.7e9 + n, "heartbeat_at": 1.7e9 + n + 1,
            "finished_at": 1.7e9 + n + 1, "config_json": dumps(config), "summary_json": "{}",
            "summary_removed": [], "metadata_json": "{}", "host": "", "run_dir": "", "last_seq": 3,
            "history_rows": 1, "last_step": 0, "runtime": 1.0, "tracked_seconds": 1.0, "writer_hash": "",
            "client_tags": [],
        }
        for n, (config, _summary) in enumerate(data)
    ]  # fmt: skip
    with store.engine.begin() as conn:
        for i in range(0, len(rows), 2000):
            conn.execute(insert(runs), rows[i : i + 2000])
        pks = dict(conn.execute(select(runs.c.run_id, runs.c.pk).where(runs.c.project == "search")).all())
        metrics: list[dict[str, Any]] = []
        values: list[dict[str, Any]] = []
        for n, (config, summary) in enumerate(data):
            pk = pks[f"s{n:05d}"]
            mine = [
                {
                    "run_pk": pk, "key": k, "last_step": 0, "last_json": None, "has_num": True,
                    "num_is_int": False, "num_last": v, "num_last_step": 0, "num_min": v, "num_max": v,
                }
                for k, v in summary.items()
            ]  # fmt: skip
            metrics += mine
            docs = _Docs(pk, dumps(config))
            for kind in (_values.KIND_CONFIG, _values.KIND_SUMMARY):
                for key, (vtype, num, text) in _values.values_of(kind, docs, mine).items():
                    values.append(
                        {
                            "run_pk": pk,
                            "kind": kind,
                            "key": key,
                            "vtype": str(vtype),
                            "num": num,
                            "text": text,
                        }
                    )
        for model, batch in ((MetricSummaryRow, metrics), (RunValueRow, values)):
            for i in range(0, len(batch), 20_000):
                conn.execute(insert(model.__table__), batch[i : i + 20_000])
    if store.engine.dialect.name == "postgresql":
        # As autovacuum soon would after a bulk load (VACUUM runs outside a transaction).
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    store.close()


def _await_statistics(db: Any, timeout: float = 60.0) -> None:
    """Until the server's first upkeep pass has analyzed run_values (a store that has been running)."""
    import sqlite3

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = sqlite3.connect(db)
        try:
            if conn.execute("SELECT 1 FROM sqlite_stat1 WHERE tbl = 'run_values'").fetchone():
                return
        except sqlite3.OperationalError:
            pass  # no sqlite_stat1 yet
        finally:
            conn.close()
        time.sleep(0.05)  # polling another process's database for a condition, with a deadline
    raise SystemExit("the store server did not analyze its search tables within 60 s")


class _Docs:
    def __init__(self, pk: int, config_json: str) -> None:
        self.pk, self.config_json, self.summary_json = pk, config_json, "{}"
        self.summary_removed: list[str] = []
        self.tags: list[str] = []
        self.metadata_json = "{}"


def run_tracklog(args: Any, out: dict[str, Any]) -> bool:
    import tracklog

    data = project(args.runs)
    pg = c.PostgresDatabase() if args.backend == "postgres" else None
    db_url = pg.url if pg is not None else f"sqlite:///{args.workdir / 'store.db'}"
    server = None
    try:
        t0 = time.perf_counter()
        _populate_tracklog(db_url, data)
        out["populate_s"] = time.perf_counter() - t0
        server = c.StoreServerProcess(db_url, args.workdir)
        if pg is None:
            _await_statistics(args.workdir / "store.db")
        api = tracklog.Api(server=server.address)

        def first_page() -> None:
            runs = api.runs("bench/search", filters=FILTERS, order=ORDER, per_page=PER_PAGE)
            runs[0]

        def group() -> None:
            api.runs("bench/search", filters=FILTERS).group_by("config.c3")

        page = _timed(first_page, args.reps)
        grouped = _timed(group, args.reps)
        runs = api.runs("bench/search", filters=FILTERS, order=ORDER, per_page=PER_PAGE)
        best = sorted((s["s0"] for cfg, s in data if cfg["c3"] == "adam" and s["s2"] < 0.8), reverse=True)[
            :PER_PAGE
        ]
        got = [r.summary["s0"] for r in runs[:PER_PAGE]]
        groups = api.runs("bench/search", filters=FILTERS).group_by("config.c3")
        api.close()
        out.update(
            first_page_s=statistics.median(page),
            first_page_p90_s=c.percentile(sorted(page), 90),
            group_by_s=statistics.median(grouped),
            group_by_p90_s=c.percentile(sorted(grouped), 90),
            total=len(runs),
            expected_total=expected_total(data),
        )
        ok = len(runs) == expected_total(data) and got == best
        ok = ok and [(g.value, g.count) for g in groups] == [("adam", expected_total(data))]
        if not ok:
            out["error"] = f"found {len(runs)} runs, expected {expected_total(data)}; or the order differs"
        return ok
    finally:
        if server is not None:
            server.close()
        if pg is not None:
            pg.close()


def run_mlflow(args: Any, out: dict[str, Any]) -> bool:
    import uuid

    from mlflow import MlflowClient
    from mlflow.store.tracking.dbmodels import models as m
    from sqlalchemy import insert

    data = project(args.runs)
    pg = c.PostgresDatabase() if args.backend == "postgres" else None
    # MLflow names psycopg2 for a bare postgresql:// URL; the same server through psycopg 3.
    uri = f"sqlite:///{args.workdir / 'mlflow.db'}"
    if pg is not None:
        uri = pg.url.replace("postgresql://", "postgresql+psycopg://")
    try:
        client = MlflowClient(uri)
        experiment = client.create_experiment("bench-search")
        store = client._tracking_client.store
        artifact_root = client.get_experiment(experiment).artifact_location
        now = int(time.time() * 1000)
        rows: dict[Any, list[dict[str, Any]]] = {
            m.SqlRun: [],
            m.SqlParam: [],
            m.SqlMetric: [],
            m.SqlLatestMetric: [],
        }
        t0 = time.perf_counter()
        for n, (config, summary) in enumerate(data):
            rid = uuid.uuid4().hex
            rows[m.SqlRun].append(
                {
                    "run_uuid": rid, "name": f"run-{n}", "source_type": "LOCAL", "source_name": "bench",
                    "entry_point_name": "", "user_id": "bench", "status": "FINISHED", "start_time": now + n,
                    "end_time": now + n + 1, "source_version": "", "lifecycle_stage": "active",
                    "artifact_uri": f"{artifact_root}/{rid}/artifacts", "experiment_id": int(experiment),
                }
            )  # fmt: skip
            rows[m.SqlParam] += [{"key": k, "value": str(v), "run_uuid": rid} for k, v in config.items()]
            for k, v in summary.items():
                point = {"key": k, "value": v, "timestamp": now, "step": 0, "is_nan": False, "run_uuid": rid}
                rows[m.SqlMetric].append(point)
                rows[m.SqlLatestMetric].append(point)
        with store.ManagedSessionMaker() as session:
            for model, values in rows.items():
                for i in range(0, len(values), 20_000):
                    session.execute(insert(model.__table__), values[i : i + 20_000])
        out["populate_s"] = time.perf_counter() - t0
        if pg is not None:
            import psycopg

            with psycopg.connect(pg.url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")  # as for tracklog's tables

        def first_page() -> Any:
            return client.search_runs(
                [experiment], MLFLOW_FILTER, order_by=MLFLOW_ORDER, max_results=PER_PAGE
            )

        page = _timed(first_page, args.reps)
        found = first_page()
        best = sorted((s["s0"] for cfg, s in data if cfg["c3"] == "adam" and s["s2"] < 0.8), reverse=True)
        got = [r.data.metrics["s0"] for r in found]
        out.update(first_page_s=statistics.median(page), first_page_p90_s=c.percentile(sorted(page), 90))
        ok = got == best[:PER_PAGE]
        if not ok:
            out["error"] = "MLflow's first page differs from the expected runs"
        return ok
    finally:
        if pg is not None:
            pg.close()


def main() -> int:
    p = c.parser(__doc__ or "")
    p.add_argument("--tool", required=True, choices=["tracklog", "mlflow-sqlite"])
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--reps", type=int, default=15, help="timed queries (after one warm-up)")
    args = p.parse_args()
    out: dict[str, Any] = {"tool": args.tool, "backend": args.backend, "runs": args.runs}
    ok = run_tracklog(args, out) if args.tool == "tracklog" else run_mlflow(args, out)
    c.write_result(args.out, out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
