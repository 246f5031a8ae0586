"""Migrations and the package's public surface."""

from __future__ import annotations

import json
from array import array

import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from tracklog_server import RunKey, RunState, SqlAlchemyStore
from tracklog_server.storage._database import create_store_engine, upgrade_schema
from tracklog_server.storage._models import Base

from .helpers import STDOUT, file_records, output_record, read_rows, timing_record, update_record


def test_migrations_create_the_whole_schema_from_an_empty_database(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        assert inspect(engine).get_table_names() == []
        upgrade_schema(engine)
        tables = set(inspect(engine).get_table_names())
        assert {"runs", "history_chunks", "metric_summaries", "alembic_version"} <= tables
        assert {"system_chunks", "output_lines", "file_versions", "file_chunks"} <= tables
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            version = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar_one()
        assert version == "0006"
        upgrade_schema(engine)  # a second start finds nothing to do
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("history_chunks")}
        assert "ix_history_chunks_run_key_min_step" in indexes
    finally:
        engine.dispose()


def test_sqlite_databases_use_wal_and_a_busy_timeout(tmp_path: object) -> None:
    store = SqlAlchemyStore(f"sqlite:///{tmp_path}/wal.db")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
    finally:
        store.close()


def test_the_public_surface_is_small_and_sorted() -> None:
    import tracklog_server

    assert tracklog_server.__all__ == sorted(tracklog_server.__all__)
    for name in tracklog_server.__all__:
        assert hasattr(tracklog_server, name)
    assert {"StoreServer", "SqlAlchemyStore", "AbstractStore", "main"} <= set(tracklog_server.__all__)


def test_a_database_made_at_the_first_schema_upgrades_with_its_runs_intact(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        upgrade_schema(engine, "0001")
        steps, times, values = array("q", [0, 1]), array("d", [10.0, 11.0]), array("d", [0.5, 0.25])
        with engine.begin() as conn:  # rows as a 0001 server wrote them, into the tables as they were
            tables = sqlalchemy.MetaData()
            runs = sqlalchemy.Table("runs", tables, autoload_with=conn)
            chunks = sqlalchemy.Table("history_chunks", tables, autoload_with=conn)
            assert "runtime" not in runs.c
            conn.execute(
                runs.insert().values(
                    entity="e",
                    project="p",
                    run_id="old",
                    name="old-run",
                    notes="n",
                    tags=["t"],
                    run_group="g",
                    job_type="j",
                    state="finished",
                    exit_code=0,
                    finish_reason="",
                    created_at=100.0,
                    heartbeat_at=150.0,
                    finished_at=160.0,
                    config_json='{"lr": 0.1}',
                    summary_json="{}",
                    summary_removed=[],
                    metadata_json='{"pid": 3}',
                    host="box",
                    run_dir="/r",
                    last_seq=2,
                    history_rows=2,
                    last_step=1,
                )
            )
            run_pk = conn.execute(sqlalchemy.select(runs.c.pk).where(runs.c.run_id == "old")).scalar_one()
            for key_, blob in (("_timestamp", times.tobytes()), ("loss", values.tobytes())):
                conn.execute(
                    chunks.insert().values(
                        run_pk=run_pk,
                        key=key_,
                        seq=2,
                        col_type=1,
                        min_step=0,
                        max_step=1,
                        n=2,
                        steps=steps.tobytes(),
                        values=blob,
                    )
                )
    finally:
        engine.dispose()
    store = SqlAlchemyStore(db_url)  # migrates to the newest schema
    try:
        old = RunKey("e", "p", "old")
        run = store.get_run(old)
        assert (run.name, run.notes, run.tags, run.group, run.job_type, run.state) == (
            "old-run",
            "n",
            ("t",),
            "g",
            "j",
            RunState.FINISHED,
        )
        assert (json.loads(run.config_json), json.loads(run.metadata_json)) == ({"lr": 0.1}, {"pid": 3})
        assert (run.last_seq, run.history_rows, run.last_step, run.finished_at) == (2, 2, 1, 160.0)
        assert (run.runtime, run.tracked_seconds, run.output_lines) == (60.0, 60.0, 0)
        assert [(r["_step"], r["loss"]) for r in read_rows(store, old, keys=("loss",))] == [
            (0, 0.5),
            (1, 0.25),
        ]
        assert (store.list_files(old), list(store.logs(old)), store.latest_system_metrics(old)) == (
            [],
            [],
            None,
        )
        # The upgraded run takes the new records.
        more = [
            output_record([(170.0, STDOUT, "resumed")]),
            *file_records("a.txt", 1, b"a"),
            timing_record(9, 8),
            update_record(tags=["u"]),
        ]
        assert store.ingest(old, [(3 + i, r) for i, r in enumerate(more)]).applied_through == 6
        assert [f.name for f in store.list_files(old)] == ["a.txt"]
        # 0004 took the run's tags as what its training process last sent: its new list replaces "t".
        assert store.get_run(old).tags == ("u",)
        with store.engine.connect() as conn:
            version = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar_one()
        assert version == "0006"
    finally:
        store.close()
