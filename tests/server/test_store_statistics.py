"""The planner's statistics of the searched tables: a SQLite store analyzes them itself (SQLite has
no autovacuum, and without them a group_by on 10,000 runs took 8x longer), when they are missing or a
table changed by a fifth; PostgreSQL's autovacuum keeps its own. The server does it at start and
every few minutes."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from tracklog_server import RunKey, SqlAlchemyStore, StoreServer
from tracklog_server._errors import StoreUnavailableError
from tracklog_server.application._upkeep import Upkeep
from tracklog_server.storage import _statistics
from tracklog_server.storage._store import AbstractStore

from .helpers import RunWriter, config_record, start_record, wait_for


def _ingest_runs(store: SqlAlchemyStore, first: int, count: int) -> None:
    for n in range(first, first + count):
        key = RunKey("alice", "stats", f"r{n:04d}")
        store.ingest(
            key, RunWriter(key).frames(start_record(key), config_record({"lr": n / 1000, "opt": "adam"}))
        )


def _analyzed(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT tbl, stat FROM sqlite_stat1").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()
    return {tbl: int(stat.split()[0]) for tbl, stat in rows if tbl in _statistics.SEARCH_TABLES and stat}


def test_a_sqlite_store_analyzes_its_search_tables_once_they_hold_runs_and_again_when_they_change_by_a_fifth(
    tmp_path: Path,
) -> None:
    db = tmp_path / "store.db"
    store = SqlAlchemyStore(f"sqlite:///{db}")
    try:
        assert store.refresh_statistics() is False  # empty: nothing worth planning for
        _ingest_runs(store, 0, 150)
        assert store.refresh_statistics() is True
        analyzed = _analyzed(db)
        assert (analyzed["runs"], analyzed["run_values"]) == (150, 300)  # 2 config keys a run
        assert store.refresh_statistics() is False  # nothing changed since
        _ingest_runs(store, 150, 20)  # under a fifth and under MIN_CHANGE rows: left as they are
        assert store.refresh_statistics() is False
        _ingest_runs(store, 170, 130)
        assert store.refresh_statistics() is True
        assert _analyzed(db)["runs"] == 300
    finally:
        store.close()


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_postgresql_store_leaves_its_statistics_to_autovacuum(store: SqlAlchemyStore) -> None:
    _ingest_runs(store, 0, 120)
    assert store.refresh_statistics() is False


def test_the_server_analyzes_a_store_that_was_never_analyzed_as_soon_as_it_starts(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = SqlAlchemyStore(f"sqlite:///{db}")
    _ingest_runs(store, 0, 120)
    store.close()
    assert _analyzed(db) == {}
    server = StoreServer(f"sqlite:///{db}", port=0, http_port=None)
    server.start()
    try:
        wait_for(lambda: server.upkeep.passes >= 1, 30, "the server's first upkeep pass")
        assert _analyzed(db)["runs"] == 120
    finally:
        server.stop(grace=1)


class _Unreachable(SqlAlchemyStore):
    def refresh_statistics(self) -> bool:
        raise StoreUnavailableError("database unreachable")


def test_a_failing_upkeep_pass_is_logged_and_the_next_one_still_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store: AbstractStore = _Unreachable(f"sqlite:///{tmp_path / 'store.db'}")
    upkeep = Upkeep(store, interval=0.01)
    with caplog.at_level(logging.WARNING, logger="tracklog_server.application._upkeep"):
        upkeep.start()
        try:
            wait_for(lambda: upkeep.passes >= 3, 10, "three upkeep passes")
        finally:
            upkeep.stop()
            store.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # at most once a minute, not once a pass
    assert "database unreachable" in warnings[0]
