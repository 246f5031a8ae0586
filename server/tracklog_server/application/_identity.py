"""The CheckRunId use case: the verdict of ``_run_identity.check`` on a start, with the store's
view of the run (asked by ``init()`` through the daemon before its RunStart is sent)."""

from __future__ import annotations

from tracklog_server._entities import RunKey
from tracklog_server._run_identity import REFUSALS, RESUMING, IdCheck, Verdict, check
from tracklog_server.storage import _ingest as _storage_ingest
from tracklog_server.storage._store import AbstractStore

from ._caller import Caller

__all__ = ["REFUSALS", "RESUMING", "IdCheck", "Verdict", "check", "check_run_id"]


def check_run_id(
    store: AbstractStore, caller: Caller, key: RunKey, writer_token: str, resume: str
) -> IdCheck:
    """The verdict for a start with ``writer_token`` (the token itself: it is hashed here)."""
    found, project_runs = store.run_identity(key)
    result = check(key, found, _storage_ingest.writer_hash(writer_token), resume)
    return IdCheck(result.verdict, result.message, result.found, project_runs)
