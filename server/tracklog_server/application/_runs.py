"""Use cases on runs asked for through the API (gRPC today, the HTTP API later): update (one run or
many), delete, stop.

Transports translate and validate requests, then call these; these decide (and, once auth exists,
authorize the ``Caller``); the store persists. Every call takes a caller so that authorization has
one place to go.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracklog_server import _run_states as _states
from tracklog_server._entities import Run, RunChanges, RunKey
from tracklog_server._errors import InvalidInputError
from tracklog_server.storage._store import AbstractStore

from ._caller import ANONYMOUS, Caller

__all__ = ["ANONYMOUS", "MAX_RUNS_PER_DELETE", "Caller", "delete_runs", "stop_run", "update_run"]

MAX_RUNS_PER_DELETE = 1000
MAX_RUNS_PER_UPDATE = 1000


def update_run(store: AbstractStore, caller: Caller, key: RunKey, changes: RunChanges) -> Run:
    return store.update_run(key, changes)


def update_runs(store: AbstractStore, caller: Caller, keys: Sequence[RunKey], changes: RunChanges) -> int:
    """The same edit (tags added or removed, a group, ...) of many runs, all or nothing."""
    if not keys:
        raise InvalidInputError("no runs to update")
    if len(keys) > MAX_RUNS_PER_UPDATE:
        raise InvalidInputError(f"{len(keys)} runs in one update; the limit is {MAX_RUNS_PER_UPDATE}")
    return store.update_runs(keys, changes)


def delete_runs(
    store: AbstractStore, caller: Caller, keys: Sequence[RunKey], *, delete_files: bool = False
) -> int:
    if not keys:
        raise InvalidInputError("no runs to delete")
    if len(keys) > MAX_RUNS_PER_DELETE:
        raise InvalidInputError(f"{len(keys)} runs in one delete; the limit is {MAX_RUNS_PER_DELETE}")
    return store.delete_runs(keys, delete_files)


def stop_run(store: AbstractStore, caller: Caller, key: RunKey) -> None:
    """Asks a running run to stop; RunStateError when it is not running (nothing is recorded)."""
    state = store.request_stop(key, _states.STOPPABLE)
    _states.check_stop(key, state)
