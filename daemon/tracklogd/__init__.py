"""tracklogd: the per-user, per-machine tracklog daemon.

Training processes stream their runs' records to it over a unix socket; it appends them to each
run's spool (acked after the write, fsynced in groups and before a Finish), syncs the spools to
their store servers, sends heartbeats, finishes runs whose training process vanished, and starts a
local store server for runs with none given. For every attached run it also samples system metrics
(one sampler for the machine) and captures metadata, requirements.txt and diff.patch, handing the
records to the run's client. ``python -m tracklogd [--home DIR]`` runs it.
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
from tracklogd._git import strip_credentials
from tracklogd._gpu import Gpus
from tracklogd._metadata import CapturedMetadata, capture_metadata
from tracklogd._own import is_own_spool, own_spool_beside, sync_own_spool
from tracklogd._process import main
from tracklogd._retry import RETRYABLE_CODES, RetryPolicy
from tracklogd._sampler import SystemSampler
from tracklogd._sources import NvmlLike, PsutilLike, load_nvml
from tracklogd._store_client import GrpcStoreClient, StoreClient
from tracklogd._sync import SpoolSync, SyncProgress, SyncResult, sync_spool

__all__ = [
    "RETRYABLE_CODES",
    "CapturedMetadata",
    "Daemon",
    "DaemonConfig",
    "DaemonError",
    "Gpus",
    "GrpcStoreClient",
    "NvmlLike",
    "PsutilLike",
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
    "SystemSampler",
    "TracklogdError",
    "__version__",
    "capture_metadata",
    "ensure_running",
    "is_own_spool",
    "load_nvml",
    "main",
    "own_spool_beside",
    "start",
    "status",
    "stop",
    "strip_credentials",
    "sync_own_spool",
    "sync_spool",
]
