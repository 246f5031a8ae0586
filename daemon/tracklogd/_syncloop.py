"""The daemon's sync loop: every pending run's new frames go to its store server, in order.

One worker thread per store server (the local one is the key ""), so a server that is down delays
only its own runs. A worker sleeps until woken by new frames; then it makes passes over its runs,
each pushing every run's unsynced frames (``SpoolSync``): the client's spool, then the daemon's
own spool of the run (``_own``). A pass that met a transient failure is
retried with the retry policy's backoff (capped at a few seconds); a run whose data the server
refuses is parked for a while and logged, and does not hold up the others. A run the server refuses
with PERMISSION_DENIED (this daemon does not hold the run's writer token) is parked for the rest of
this daemon's life and logged once as an error: resending cannot help, and its spool is kept, so a
later daemon or ``tracklog sync`` can try again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable

import grpc

from tracklogd._errors import SpoolUnusable, StoreError, StoreRejected, StoreUnavailable
from tracklogd._heartbeat import STOP_REASON
from tracklogd._ratelimit import RateLimitedLog
from tracklogd._retry import RetryPolicy
from tracklogd._runs import RunRegistry, RunSlot
from tracklogd._store_client import StorePool

log = logging.getLogger(__name__)

DAEMON_RETRY = RetryPolicy(initial=0.1, maximum=2.0, jitter=0.2)
PARK_SECONDS = 300.0  # a run whose frames were refused is tried again after this long
COALESCE_SECONDS = 1.0  # the longest a trickle of frames waits before it is pushed


class SyncLoop:
    def __init__(
        self,
        registry: RunRegistry,
        pool: StorePool,
        resolve: Callable[[str], str | None],
        stop: threading.Event,
        *,
        retry: RetryPolicy = DAEMON_RETRY,
        clock: Callable[[], float] = time.monotonic,
        park_seconds: float = PARK_SECONDS,
        coalesce: float = COALESCE_SECONDS,
    ) -> None:
        self.registry = registry
        self.pool = pool
        self.resolve = resolve  # server key -> target ("" -> the local server, None until it answers)
        self.stop = stop
        self.retry = retry
        self.clock = clock
        self.park_seconds = park_seconds
        self.coalesce = coalesce
        self.ratelog = RateLimitedLog(log, clock=clock)
        self._lock = threading.Lock()
        self._workers: dict[str, _Worker] = {}

    def wake(self, server: str, *, urgent: bool = True) -> None:
        """New frames (or a new run) for ``server``: its worker makes a pass soon. A trickle of
        frames (``urgent=False``) is coalesced into one pass per ``coalesce`` seconds, so that a
        training loop logging a few rows at a time does not cost the daemon and the store a
        transaction every 100 ms; a Finish or a backlog goes at once."""
        worker = self._worker(server)
        if urgent:
            worker.urgent.set()
        worker.wake.set()

    def nudge(self, server: str) -> None:
        """``server`` may be reachable now: cut the current backoff short."""
        worker = self._worker(server)
        worker.nudge.set()
        worker.wake.set()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.urgent.set()
            worker.wake.set()
            worker.nudge.set()
            worker.thread.join(max(0.0, deadline - time.monotonic()))

    def _worker(self, server: str) -> _Worker:
        with self._lock:
            worker = self._workers.get(server)
            if worker is None:
                worker = self._workers[server] = _Worker(self, server)
                worker.thread.start()
            return worker


class _Worker:
    def __init__(self, loop: SyncLoop, server: str) -> None:
        self.loop = loop
        self.server = server
        self.wake = threading.Event()  # set: there may be frames to push
        self.nudge = threading.Event()  # set: stop backing off (server back, or shutting down)
        self.urgent = threading.Event()  # set: push now rather than at the end of the coalescing wait
        self._turn = 0  # rotates which run goes first, so one failing run cannot starve the rest
        name = f"tracklogd-sync-{server or 'local'}"
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        loop = self.loop
        while not loop.stop.is_set():
            self.wake.clear()
            try:
                loop.retry.call(self._pass, stop=loop.stop, sleep=self._backoff, on_retry=self._on_retry)
            except StoreUnavailable:
                pass  # only raised once the daemon is stopping
            except Exception:  # never let the thread die: log and go on with the next wake
                log.exception("sync pass for %s failed", self.server or "the local server")
            self.wake.wait(self._until_unparked())
            if not loop.stop.is_set():
                self.urgent.wait(loop.coalesce)
            self.urgent.clear()
        log.debug("sync worker for %r stopped", self.server)

    def _backoff(self, seconds: float) -> None:
        self.nudge.wait(seconds)
        self.nudge.clear()

    def _on_retry(self, exc: StoreError, seconds: float) -> None:
        self.loop.ratelog.warning(
            f"sync:{self.server}", "cannot sync to %s (%s); retrying in %.1fs", self._name(), exc, seconds
        )

    def _name(self) -> str:
        return self.server or "the local store server"

    def _pass(self) -> None:
        """Pushes every unsynced, unparked run of this server once. Raises StoreUnavailable if any
        push failed transiently (after trying the others), so that the pass is retried."""
        loop = self.loop
        now = loop.clock()
        slots = [s for s in loop.registry.snapshot() if s.server == self.server]
        due = [s for s in slots if s.unsynced() and s.parked_until <= now]
        for slot in slots:
            if not slot.unsynced():
                loop.registry.retire_if_done(slot)
        target = loop.resolve(self.server)
        if target is not None and loop.pool.info(target) is None:
            with contextlib.suppress(StoreError):  # for run URLs; the pushes below report failures
                loop.pool.fetch_info(target)
        if not due:
            return
        if target is None:
            raise StoreUnavailable(f"{self._name()} is not running yet")
        client = loop.pool.client(target)
        self._turn += 1
        failure: StoreUnavailable | None = None
        for slot in due[self._turn % len(due) :] + due[: self._turn % len(due)]:
            if loop.stop.is_set():
                raise StoreUnavailable("stopping")
            try:
                slot.sync.push(client, upto=slot.durable_seq)
                # The daemon's own frames of the run go once the store holds its RunStart (seq 1).
                if slot.sync.synced and slot.own.unsynced():
                    slot.own.sync.push(client)
            except StoreUnavailable as exc:
                failure = exc
                continue
            except (StoreRejected, SpoolUnusable) as exc:
                if isinstance(exc, StoreRejected) and exc.code == grpc.StatusCode.PERMISSION_DENIED:
                    self._refuse(slot, str(exc))
                else:
                    self._park(slot, str(exc))
                continue
            finally:
                self._forward_stop(slot)
            slot.parked_until, slot.parked_reason = 0.0, ""
            loop.registry.retire_if_done(slot)
        if failure is not None:
            raise failure
        loop.ratelog.forget(f"sync:{self.server}")

    def _forward_stop(self, slot: RunSlot) -> None:
        """An ingest's answer said a stop is pending: the training process hears it now, not at the
        next heartbeat (the registry forwards it once per client stream)."""
        if slot.sync.stop_requested:
            slot.sync.stop_requested = False
            if self.loop.registry.request_stop(slot.key, STOP_REASON):
                log.info("forwarded a stop request to run %s (from an ingest's answer)", slot.key)

    def _park(self, slot: RunSlot, reason: str) -> None:
        loop = self.loop
        slot.parked_until = loop.clock() + loop.park_seconds
        slot.parked_reason = reason
        loop.ratelog.warning(
            f"park:{slot.key}",
            "not syncing run %s for %.0fs: %s",
            slot.key,
            loop.park_seconds,
            reason,
        )

    def _refuse(self, slot: RunSlot, reason: str) -> None:
        slot.parked_until = math.inf
        slot.parked_reason = reason
        log.error(
            "not syncing run %s again until tracklogd restarts; its spool %s is kept: %s",
            slot.key,
            slot.sync.spool,
            reason,
        )

    def _until_unparked(self) -> float | None:
        """How long until a parked run of this server is due again (None: none is parked)."""
        loop = self.loop
        now = loop.clock()
        times = [
            s.parked_until
            for s in loop.registry.snapshot()
            if s.server == self.server and now < s.parked_until < math.inf and s.unsynced()
        ]
        if not times:
            return None
        return min(times) - now + 0.01
