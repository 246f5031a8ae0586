"""Migrations and the package's public surface."""

from __future__ import annotations

import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from tracklog_server import SqlAlchemyStore
from tracklog_server._database import create_store_engine, upgrade_schema
from tracklog_server._models import Base


def test_migrations_create_the_whole_schema_from_an_empty_database(db_url: str) -> None:
    engine = create_store_engine(db_url)
    try:
        assert inspect(engine).get_table_names() == []
        upgrade_schema(engine)
        tables = set(inspect(engine).get_table_names())
        assert {"runs", "history_chunks", "metric_summaries", "alembic_version"} <= tables
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            version = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar_one()
        assert version == "0001"
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
