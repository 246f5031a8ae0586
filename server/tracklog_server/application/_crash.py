"""Crash detection: runs whose heartbeats stopped are marked ``crashed``.

Each pass is a single ``UPDATE ... WHERE state = 'running' AND heartbeat_at < now - timeout`` in the
store, so any number of server replicas can run a detector on one database: a row is changed by
whichever statement reaches it first and no longer matches for the others. The detector keeps no state
about runs; a heartbeat arriving later turns a crashed run that has not finished back to running.
"""

from __future__ import annotations

import logging
import threading
import time

from tracklog_server._errors import StoreError
from tracklog_server.storage._store import AbstractStore

log = logging.getLogger(__name__)

_QUIET_LOG_SECONDS = 60.0  # repeated failures are logged at most this often


class CrashDetector:
    """Calls ``store.mark_crashed(timeout)`` every ``interval`` seconds in a daemon thread.

    ``interval`` is real time (the thread's wait); whether a run is late is decided by the store's clock.
    """

    def __init__(self, store: AbstractStore, timeout: float, interval: float | None = None) -> None:
        if timeout <= 0:
            raise ValueError("heartbeat timeout must be positive")
        self._store = store
        self.timeout = timeout
        # A fraction of the timeout: a run is marked at most timeout + interval after its last beat.
        self.interval = interval if interval is not None else min(max(timeout / 4, 0.05), 30.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error_log = -_QUIET_LOG_SECONDS

    def check_once(self) -> int:
        """One pass; returns how many runs were marked crashed (0 when the store failed)."""
        try:
            marked = self._store.mark_crashed(self.timeout)
        except StoreError as exc:
            now = time.monotonic()
            if now - self._last_error_log >= _QUIET_LOG_SECONDS:
                self._last_error_log = now
                log.warning("crash detection failed (will retry): %s", exc)
            return 0
        if marked:
            log.info("marked %d run(s) crashed: no heartbeat for %.0f s", marked, self.timeout)
        return marked

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tracklog-crash-detector", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_once()
            except Exception:  # never let the thread die: the next pass may succeed
                log.exception("crash detection failed unexpectedly")
