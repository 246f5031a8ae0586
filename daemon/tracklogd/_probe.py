"""ProbeRun: ``init()`` asks, through the daemon, whether the run's store lets a run start with its
id (``Store.CheckRunId``), so that a taken or deleted id is refused at ``init()`` with the store's
reason rather than found out later by the sync.

Bounded in time: the answer comes within the request's timeout (the local store may still be
starting: it is waited for within the same bound). A store that cannot be reached is no refusal: the
run starts, its frames are kept in its spool, and if the store refuses them later the daemon reports
it (its log, ``tracklog runs``) and keeps the spool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tracklog.v1 import daemon_pb2, store_pb2
from tracklogd._errors import StoreError
from tracklogd._pids import process_alive
from tracklogd._records import ref_key
from tracklogd._runs import RunRegistry
from tracklogd._store_client import StorePool

MAX_PROBE_SECONDS = 10.0
_RESOLVE_POLL = 0.02  # while the local store starts: its target appears when it answers


def probe_run(
    registry: RunRegistry,
    pool: StorePool,
    resolve: Callable[[str], str | None],
    request: daemon_pb2.ProbeRunRequest,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
) -> daemon_pb2.ProbeRunResponse:
    busy = _written_here(registry, request)
    if busy:
        answer = store_pb2.CheckRunIdResponse(verdict=store_pb2.RUN_ID_LIVE, message=busy, last_step=-1)
        return daemon_pb2.ProbeRunResponse(reached=True, answer=answer)
    timeout = min(max(request.timeout, 0.0), MAX_PROBE_SECONDS) or 2.0
    deadline = clock() + timeout
    target = resolve(request.server)
    while target is None:  # the local store server is starting
        if stop.wait(_RESOLVE_POLL) or clock() >= deadline:
            return daemon_pb2.ProbeRunResponse(reached=False, error="the store server is not running yet")
        target = resolve(request.server)
    check = store_pb2.CheckRunIdRequest(
        ref=request.ref, writer_token=request.writer_token, resume=request.resume
    )
    try:
        answer = pool.client(target).check_run_id(check, max(0.05, deadline - clock()))
    except StoreError as exc:
        return daemon_pb2.ProbeRunResponse(reached=False, error=str(exc))
    return daemon_pb2.ProbeRunResponse(reached=True, answer=answer)


def _written_here(registry: RunRegistry, request: daemon_pb2.ProbeRunRequest) -> str:
    """Why the run may not start: another live training process of this machine writes it now
    (the same run folder resumed twice at once: both carry its writer token, so the store could
    not tell them apart, and their frames would share seqs). "" when none does."""
    key = ref_key(request.ref)
    for slot in registry.snapshot():
        if slot.key == key and slot.attached and slot.pid != request.pid and process_alive(slot.pid):
            return (
                f"run {key} is still running in another process on this machine (pid {slot.pid}); two "
                "processes writing one run would interleave their rows: wait until it ends (or stop "
                "it), or choose another id"
            )
    return ""
