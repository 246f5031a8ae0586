"""Heartbeats: a daemon names the runs whose training process it still hears; the answer names the
runs among them that were asked to stop.

Liveness never waits behind ingest: the store records a heartbeat as one short UPDATE taken before
any waiting ingest (``storage._write_turns``), and the transport keeps RPC threads free for it
(``_ingest.IngestGate``). Frames arriving for a run prove it alive too (``_states.alive``), so a run
whose heartbeat came late while its rows were being stored is never taken for a silent one.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracklog_server._entities import RunKey
from tracklog_server._errors import InvalidInputError
from tracklog_server._limits import MAX_RUNS_PER_HEARTBEAT
from tracklog_server.storage._store import AbstractStore

from ._caller import Caller


def heartbeat(store: AbstractStore, caller: Caller, keys: Sequence[RunKey]) -> tuple[RunKey, ...]:
    """Records that ``keys`` are alive (reviving crashed ones that have not finished); returns those
    with a pending stop request. Answered on every beat until the run finishes: a daemon that missed
    one answer (or restarted) hears it again, and forwards it once per client stream."""
    if len(keys) > MAX_RUNS_PER_HEARTBEAT:
        raise InvalidInputError(f"{len(keys)} runs in one heartbeat; the limit is {MAX_RUNS_PER_HEARTBEAT}")
    unique = list(dict.fromkeys(keys))
    if not unique:
        return ()
    return store.heartbeat(unique)
