"""tracklogd: the per-user, per-machine tracklog daemon.

Training processes stream their runs' records to it over a unix socket; it appends them to each
run's spool (acked after the write, fsynced in groups and before a Finish), syncs the spools to
their store servers, sends heartbeats, finishes runs whose training process vanished, and starts a
local store server for runs with none given. ``python -m tracklogd [--home DIR]`` runs it.
"""

from __future__ import annotations

from tracklog import __version__
from tracklogd._config import DaemonConfig
from tracklogd._control import ensure_running, start, status, stop
from tracklogd._daemon import Daemon
from tracklogd._errors import (
    DaemonError,
    SpoolUnusable,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    StreamRefused,
    TracklogdError,
)
from tracklogd._process import main
from tracklogd._retry import RETRYABLE_CODES, RetryPolicy
from tracklogd._store_client import GrpcStoreClient, StoreClient
from tracklogd._sync import SpoolSync, SyncProgress, SyncResult, sync_spool

__all__ = [
    "RETRYABLE_CODES",
    "Daemon",
    "DaemonConfig",
    "DaemonError",
    "GrpcStoreClient",
    "RetryPolicy",
    "SpoolSync",
    "SpoolUnusable",
    "StoreClient",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "StreamRefused",
    "SyncProgress",
    "SyncResult",
    "TracklogdError",
    "__version__",
    "ensure_running",
    "main",
    "start",
    "status",
    "stop",
    "sync_spool",
]
