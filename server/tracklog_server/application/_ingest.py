"""Ingest: a run's frames from its writer (the training process's sequence through the daemon, or
the daemon's own sequence), applied at most once per (run, source, seq).

The store decides per frame inside one transaction (``storage._ingest``) and applies the run-state
transitions of ``_states`` there (start, alive, finish); this layer admits the call and picks the
sequence. The answer also says whether a stop of the run is pending, so a daemon that is pushing a
run's rows learns of a stop on its next push, without waiting for its next heartbeat.

Admission (``IngestGate``): a server has a fixed number of RPC threads. Ingest can be slow (a big
batch, or on SQLite a queue of writers), and if every thread sat in an ingest, heartbeats could not
even be read off the wire, and live runs would be marked crashed. So at most ``slots`` ingests run
at once; one more is refused at once with StoreUnavailableError (the daemon retries it after a
backoff, as for any server that is briefly unavailable), which keeps the other threads for
heartbeats and reads.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Sequence

from tracklog_server._entities import IngestResult, RunKey
from tracklog_server._errors import StoreUnavailableError
from tracklog_server.storage._store import AbstractStore

from ._caller import Caller

# RPC threads kept free of ingest for heartbeats, stop requests and reads.
RESERVED_THREADS = 4


class Source(enum.Enum):
    CLIENT = "client"  # the training process's records (its spool run-<id>.tlog)
    DAEMON = "daemon"  # the daemon's records of the run: system metrics, metadata, captured files


class IngestGate:
    """At most ``slots`` ingests at once; never waits (a wait would hold the thread it protects)."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("an ingest gate needs at least one slot")
        self.slots = slots
        self._sem = threading.BoundedSemaphore(slots)

    @classmethod
    def for_threads(cls, threads: int) -> IngestGate:
        return cls(max(1, threads - RESERVED_THREADS))

    def enter(self) -> None:
        if not self._sem.acquire(blocking=False):
            raise StoreUnavailableError(
                f"the store is busy ({self.slots} ingests in progress); send the frames again shortly"
            )

    def leave(self) -> None:
        self._sem.release()


def ingest(
    store: AbstractStore,
    caller: Caller,
    key: RunKey,
    frames: Sequence[tuple[int, bytes]],
    *,
    source: Source,
    writer_token: str,
    gate: IngestGate | None = None,
) -> IngestResult:
    if gate is not None:
        gate.enter()
    try:
        if source is Source.DAEMON:
            return store.ingest_daemon(key, frames, writer_token=writer_token)
        return store.ingest(key, frames, writer_token=writer_token)
    finally:
        if gate is not None:
            gate.leave()
