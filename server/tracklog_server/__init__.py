"""tracklog's store server: keeps runs in SQLite or PostgreSQL, serves gRPC and HTTP.

Run it with ``python -m tracklog_server`` (or ``tracklog server``), or embed it::

    from tracklog_server import StoreServer
    srv = StoreServer("sqlite:///store.db", port=0, http_port=0)
    srv.start(); print(srv.grpc_address, srv.http_url); srv.stop()
"""

from __future__ import annotations

from ._cli import main
from ._entities import (
    ColumnSlice,
    FileInfo,
    HistoryPage,
    HistoryQuery,
    IngestResult,
    MetricSummary,
    OutputLine,
    OutputStream,
    RefusedRecord,
    Run,
    RunChanges,
    RunFilter,
    RunKey,
    RunState,
    SystemPage,
    SystemQuery,
    SystemSeriesSlice,
    SystemSnapshot,
)
from ._errors import (
    DataRefusedError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RunDeletedError,
    RunFileNotFoundError,
    RunNotFoundError,
    RunStateError,
    SchemaError,
    StoreConflictError,
    StoreError,
    StoreUnavailableError,
)
from ._server import StoreServer
from .storage._sql_store import SqlAlchemyStore
from .storage._store import AbstractStore

__all__ = [
    "AbstractStore",
    "ColumnSlice",
    "DataRefusedError",
    "FileInfo",
    "HistoryPage",
    "HistoryQuery",
    "IngestResult",
    "InvalidInputError",
    "MetricSummary",
    "NotFoundError",
    "OutputLine",
    "OutputStream",
    "PermissionDeniedError",
    "RefusedRecord",
    "Run",
    "RunChanges",
    "RunDeletedError",
    "RunFileNotFoundError",
    "RunFilter",
    "RunKey",
    "RunNotFoundError",
    "RunState",
    "RunStateError",
    "SchemaError",
    "SqlAlchemyStore",
    "StoreConflictError",
    "StoreError",
    "StoreServer",
    "StoreUnavailableError",
    "SystemPage",
    "SystemQuery",
    "SystemSeriesSlice",
    "SystemSnapshot",
    "main",
]
