"""Turns at SQLite's one write lock, taken in this process before BEGIN IMMEDIATE, with a lane for
the short writes that keep runs alive (heartbeats, the crash detector).

Why: SQLite has one writer at a time, and a writer that finds the lock taken sleeps in its busy
handler and polls. Under a steady stream of ingest transactions a heartbeat polling that way can lose
the race again and again, miss its deadline, and its run is then marked crashed while its rows are
still arriving. Taking turns here instead means a writer waits on a condition that is signalled when
the lock is free, and an urgent writer (``urgent=True``) goes before every ordinary one that waits:
a heartbeat waits for at most the one transaction in progress, never for the queue behind it.

Invariant: at most one transaction of this store holds a turn; turns are held from before BEGIN to
after COMMIT or ROLLBACK. PostgreSQL locks rows, not the database, so it takes no turns.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class WriteTurns:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent_waiting = 0
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Writers waiting for their turn now (for diagnostics and tests)."""
        with self._cond:
            return self._waiting

    @contextlib.contextmanager
    def turn(self, urgent: bool = False) -> Iterator[None]:
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
            self._waiting += 1
            try:
                while self._busy or (not urgent and self._urgent_waiting):
                    self._cond.wait()
                self._busy = True
            finally:
                self._waiting -= 1
                if urgent:
                    self._urgent_waiting -= 1
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


class NoTurns(WriteTurns):
    """For databases that lock rows: every writer goes at once."""

    @contextlib.contextmanager
    def turn(self, urgent: bool = False) -> Iterator[None]:
        yield
