"""Store-server fixtures: real SQLite files and a real PostgreSQL, one fresh database per test.

PostgreSQL comes from TRACKLOG_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/).
If it cannot be reached, its tests fail, unless TRACKLOG_TEST_SKIP_POSTGRES=1 makes them skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tracklog import Api
from tracklog.v1 import store_pb2_grpc
from tracklog_server import RunKey, SqlAlchemyStore, StoreServer
from tracklog_server.testing import FakeClock

from .helpers import StatementCounter

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _pg_url(database: str) -> str:
    base = make_url(os.environ.get("TRACKLOG_TEST_POSTGRES_URL") or DEFAULT_PG)
    return base.set(drivername="postgresql", database=database).render_as_string(hide_password=False)


class PostgresDatabases:
    """Creates databases named tracklog_test_<random> and drops them at the end of the session."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self._admin: psycopg.Connection[tuple[object, ...]] | None = None

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._admin is None:
            try:
                self._admin = psycopg.connect(_pg_url("postgres"), autocommit=True, connect_timeout=5)
            except psycopg.OperationalError as exc:
                message = f"PostgreSQL at {_pg_url('postgres')} is not reachable: {exc}"
                if os.environ.get("TRACKLOG_TEST_SKIP_POSTGRES") == "1":
                    pytest.skip(message)
                pytest.fail(message + " (set TRACKLOG_TEST_SKIP_POSTGRES=1 to skip these tests)")
        return self._admin

    def create(self) -> str:
        name = f"tracklog_test_{secrets.token_hex(6)}"
        self.admin().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return _pg_url(name)

    def drop_all(self) -> None:
        if self._admin is None:
            return
        for name in self.created:
            self._admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        self._admin.close()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_db_url(backend: str, tmp_path: Path, postgres_databases: PostgresDatabases) -> Callable[[], str]:
    """Returns a factory of empty databases of this test's backend."""
    counter = iter(range(1_000_000))

    def make() -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'store-{next(counter)}.db'}"
        return postgres_databases.create()

    return make


@pytest.fixture
def db_url(make_db_url: Callable[[], str]) -> str:
    return make_db_url()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[SqlAlchemyStore]:
    s = SqlAlchemyStore(db_url, clock=clock)
    yield s
    s.close()


@pytest.fixture
def key() -> RunKey:
    return RunKey("alice", "mnist", secrets.token_hex(4))


@pytest.fixture
def counter(store: SqlAlchemyStore) -> Iterator[StatementCounter]:
    """The statements ``store`` issues while the test runs."""
    c = StatementCounter()
    event.listen(store.engine, "before_cursor_execute", c)
    yield c
    event.remove(store.engine, "before_cursor_execute", c)


@pytest.fixture
def server(db_url: str, clock: FakeClock) -> Iterator[StoreServer]:
    """A real store server on the test's database (gRPC and HTTP on free ports, the test's clock)."""
    srv = StoreServer(db_url, port=0, http_port=0, heartbeat_timeout=60.0, clock=clock)
    srv.start()
    yield srv
    srv.stop(grace=1)


@pytest.fixture
def stub(server: StoreServer) -> Iterator[store_pb2_grpc.StoreStub]:
    """The Store service of ``server``, over a real channel."""
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield store_pb2_grpc.StoreStub(channel)


@pytest.fixture
def api(server: StoreServer) -> Iterator[Api]:
    """The public Api on ``server``."""
    with Api(server.grpc_address) as a:
        yield a
