"""Reading one run: what the gRPC GetRun and the HTTP pages both call.

A deleted run answers RunDeletedError (a NotFoundError that says it was deleted and that its id stays
reserved), an unknown one RunNotFoundError: the store tells them apart, this layer passes them on.
"""

from __future__ import annotations

from tracklog_server._entities import Run, RunKey
from tracklog_server.storage._store import AbstractStore

from ._caller import Caller


def get_run(store: AbstractStore, caller: Caller, key: RunKey) -> Run:
    return store.get_run(key)
