"""Heartbeats: every interval, each store server hears which of its runs have a live client.

Only runs whose RunStart is synced are named (before that the server does not know them). A server
may answer that some runs were asked to stop; the stop is forwarded on the run's stream. Failures
are logged (rate-limited) and otherwise ignored: the next beat tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tracklogd._errors import StoreError
from tracklogd._ratelimit import RateLimitedLog
from tracklogd._records import ref_key
from tracklogd._runs import RunRegistry, RunSlot
from tracklogd._store_client import StorePool

log = logging.getLogger(__name__)

# What the training process prints (and so its console log records) when the stop reaches it.
STOP_REASON = "a stop was requested through the tracklog API (Api().run(...).stop() or `tracklog stop`)"


class Heartbeats:
    def __init__(
        self,
        registry: RunRegistry,
        pool: StorePool,
        resolve: Callable[[str], str | None],
        stop: threading.Event,
        interval: float,
    ) -> None:
        self._registry = registry
        self._pool = pool
        self._resolve = resolve
        self._stop = stop
        self._interval = interval
        self._ratelog = RateLimitedLog(log)
        self.thread = threading.Thread(target=self._run, name="tracklogd-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.beat()
            except Exception:  # never let the thread die
                self._ratelog.log(logging.ERROR, "beat", "heartbeat failed", exc_info=True)

    def beat(self) -> None:
        """Sends one heartbeat per server for its attached, started runs; forwards stops."""
        groups: dict[str, list[RunSlot]] = {}
        for slot in self._registry.snapshot():
            if slot.attached and slot.sync.synced >= 1:
                groups.setdefault(slot.server, []).append(slot)
        for server, slots in groups.items():
            target = self._resolve(server)
            if target is None:
                continue
            try:
                response = self._pool.client(target).heartbeat([slot.ref for slot in slots])
            except StoreError as exc:
                self._ratelog.warning(f"server:{server}", "heartbeat to %s failed: %s", target, exc)
                continue
            self._ratelog.forget(f"server:{server}")
            for ref in response.stop:
                if self._registry.request_stop(ref_key(ref), STOP_REASON):
                    log.info("forwarded a stop request to run %s", ref_key(ref))
