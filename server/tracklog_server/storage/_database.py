"""Engines and schema: database URLs as users give them, SQLite tuning, Alembic at start-up.

SQLite: WAL (readers never block the writer), a busy timeout (concurrent writers wait instead of
failing), ``synchronous=NORMAL`` (a commit does not fsync; a power loss may drop the last commits but
never corrupts the file, and the sync protocol heals that: the daemon keeps its spool and resends from
``applied_through + 1``). pysqlite's own transaction handling is switched off so that every transaction
starts with an explicit ``BEGIN``; engines made with :func:`writer` start with ``BEGIN IMMEDIATE``, taking
the write lock up front, so read-then-write transactions (ingest) are serialized instead of failing
with "database is locked" when two of them upgrade their locks at once.

PostgreSQL: ``postgresql://`` and ``postgres://`` URLs are mapped to the psycopg 3 driver. Writers lock
the run row with ``SELECT ... FOR UPDATE``; migrations hold an advisory lock so that replicas starting
together do not race.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import URL, Connection, make_url

from tracklog_server._errors import InvalidInputError, SchemaError, translate_db_errors

from ._sql_search import regexp

log = logging.getLogger(__name__)

_WRITE_OPTION = "tracklog_write"
_SQLITE_BUSY_TIMEOUT_S = 30.0
# Any constant works; it only has to be the same for every replica (and unlikely to clash).
_MIGRATION_LOCK_KEY = 0x7472_616B_6C6F_67
_MIGRATIONS = Path(__file__).with_name("migrations")


def normalize_url(url: str) -> URL:
    """Parses a database URL as a user writes it, selecting the drivers this package ships with."""
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        raise InvalidInputError(f"invalid database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
            return parsed.set(drivername="postgresql+psycopg")
        raise InvalidInputError(f"unsupported PostgreSQL driver {parsed.drivername!r}; use postgresql://")
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:") or (parsed.query.get("mode") == "memory"):
            raise InvalidInputError("an in-memory SQLite database cannot be shared; use sqlite:///PATH")
        return parsed
    raise InvalidInputError(f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://...")


def display_url(url: URL) -> str:
    """The URL for messages and logs: the password is never shown."""
    return url.render_as_string(hide_password=True)


def create_store_engine(url: str | URL, pool_size: int = 10) -> Engine:
    parsed = url if isinstance(url, URL) else normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None  # normalize_url refuses in-memory databases
        Path(parsed.database).expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _configure_sqlite(engine)
        return engine
    if parsed.drivername == "postgresql+psycopg" and importlib.util.find_spec("psycopg") is None:
        # The driver is an extra (``tracklog[postgres]``): a machine with only the SQLite store lacks it.
        raise InvalidInputError("a PostgreSQL database needs its driver: pip install 'tracklog[postgres]'")
    return create_engine(parsed, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def writer(engine: Engine) -> Engine:
    """An engine sharing ``engine``'s pool whose transactions take the write lock at BEGIN (SQLite)."""
    return engine.execution_options(**{_WRITE_OPTION: True})


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below (pysqlite would otherwise BEGIN lazily
        # and DEFERRED, right before the first write).
        dbapi_connection.isolation_level = None
        # Searches' $regex (see ``_sql_search``): Python's re, with the query's deadline checked.
        dbapi_connection.create_function("tracklog_regexp", 2, regexp, deterministic=True)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(_SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Brings the schema to the newest migration (creating it in an empty database); ``revision``
    stops at an older one (tests upgrade a database made by an older server)."""
    cfg = Config()
    cfg.set_main_option("script_location", os.fspath(_MIGRATIONS))
    with translate_db_errors("migrate the database schema"), writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            # Released at commit; a second replica waits here, then finds nothing to do.
            conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
        cfg.attributes["connection"] = conn
        try:
            command.upgrade(cfg, revision)
        except CommandError as exc:
            raise SchemaError(
                f"cannot migrate the database schema: {exc} (was it created by a newer tracklog?)"
            ) from exc
    log.debug("schema of %s is current", display_url(engine.url))
