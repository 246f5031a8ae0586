"""The query planner's statistics of the tables search reads, on SQLite.

SQLite has no autovacuum: without ``ANALYZE`` its planner guesses how many rows each index gives, and
on a project of 10,000 runs with 20 config and 20 summary keys a ``group_by`` took ~950 ms instead of
~120 ms (it read run_values in the wrong order). So the store refreshes the statistics of ``runs``,
``run_values`` and ``metric_summaries`` when they are missing, or when a table has grown or shrunk
by a fifth (and at least ``MIN_CHANGE`` rows) since they were taken; the server asks at start and every
few minutes (``application._upkeep``). The tables that grow with logged rows (history, logs, files)
are read by primary key and are never analyzed here, so the work is bounded by the number of runs
and keys: about 0.1 s for that project, and in proportion beyond it (a store of 1,000,000 runs x 40
keys, far past what SQLite is for, would hold the write lock about 10 s once, and again only after
growing by a fifth). Each table is analyzed in a write turn of its own, so heartbeats go between
them. ``PRAGMA analysis_limit`` would bound the time, but its sampled statistics planned the same
group_by as badly as none (1.2 s). PostgreSQL's autovacuum keeps its own statistics.
"""

from __future__ import annotations

import sqlalchemy.exc
from sqlalchemy.engine import Connection

SEARCH_TABLES = ("runs", "run_values", "metric_summaries")
DRIFT = 0.2  # the fraction of a table's rows that may change before its statistics are taken again
MIN_CHANGE = 100  # below this many rows of change, never (a small table is planned well enough)


def analyzed_rows(conn: Connection) -> dict[str, int]:
    """How many rows each search table had when last analyzed (absent: never, or it was empty)."""
    try:
        stats = conn.exec_driver_sql("SELECT tbl, stat FROM sqlite_stat1").all()
    except sqlalchemy.exc.OperationalError:  # no sqlite_stat1: nothing was ever analyzed
        return {}
    out: dict[str, int] = {}
    for table, stat in stats:
        if table in SEARCH_TABLES and stat:  # per index; a partial index counts fewer: the largest
            out[table] = max(out.get(table, 0), int(str(stat).split()[0]))
    return out


def stale_tables(conn: Connection) -> list[str]:
    """The search tables whose statistics are missing or out of date."""
    analyzed = analyzed_rows(conn)
    stale = []
    for table in SEARCH_TABLES:
        rows = int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
        before = analyzed.get(table, 0)
        if abs(rows - before) >= max(MIN_CHANGE, DRIFT * before):
            stale.append(table)
    return stale


def analyze(conn: Connection, table: str) -> None:
    if table not in SEARCH_TABLES:  # names only from the fixed list ever reach SQL
        raise ValueError(f"not a search table: {table!r}")
    conn.exec_driver_sql(f"ANALYZE {table}")
