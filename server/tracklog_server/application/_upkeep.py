"""Upkeep of the store while the server runs: its query planner's statistics, at start and every few
minutes (``AbstractStore.refresh_statistics``; SQLite needs it, PostgreSQL's autovacuum does it).

A daemon thread, like the crash detector's; a failure is logged (at most once a minute) and the next
pass tries again: searches stay correct without fresh statistics, only slower.
"""

from __future__ import annotations

import logging
import threading
import time

from tracklog_server._errors import StoreError
from tracklog_server.storage._store import AbstractStore

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 300.0
_QUIET_LOG_SECONDS = 60.0
STOP_TIMEOUT = 30.0


class Upkeep:
    """Calls ``store.refresh_statistics()`` at ``start()`` and every ``interval`` seconds."""

    def __init__(self, store: AbstractStore, interval: float = DEFAULT_INTERVAL) -> None:
        self._store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error_log = -_QUIET_LOG_SECONDS
        self.passes = 0  # completed passes (tests wait on it)

    def run_once(self) -> bool:
        """One pass; True when statistics were refreshed."""
        try:
            refreshed = self._store.refresh_statistics()
        except StoreError as exc:
            now = time.monotonic()
            if now - self._last_error_log >= _QUIET_LOG_SECONDS:
                self._last_error_log = now
                log.warning("refreshing the store's statistics failed (will retry): %s", exc)
            refreshed = False
        self.passes += 1
        return refreshed

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tracklog-upkeep", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ends the thread; a pass in progress finishes first (up to ``timeout``: the thread is a
        daemon thread, so one still in an ANALYZE never holds up the process's exit)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("store upkeep still running after %.0f s; leaving it to finish", timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # never let the thread die: the next pass may succeed
                log.exception("store upkeep failed unexpectedly")
            self._stop.wait(self.interval)
