"""Automatic capture for attached runs: system metrics and metadata, sent on each run's stream.

The daemon never writes a record into a run's spool while its client is attached (one writer, one
seq space per run). What it makes for a run goes to the client as ``DaemonMessage.record``; the
client appends it in order with its own records, and it comes back as ordinary frames. A record
whose client has gone (detached, replaced by another process, or finished) is dropped.

- ``SamplerThread`` runs the one ``SystemSampler`` of the daemon on a thread that exists only
  while at least one run is attached.
- ``Capture`` is what the RunStream service calls: ``attached()`` after it answered the Attach
  (the run joins the sampler; metadata capture starts on a background thread when the client is a
  new training process for the run), ``detached()`` when the stream ends.

The metadata capture sends the files first (``requirements.txt``, then ``diff.patch`` when the
tree is dirty) and the ``metadata`` record LAST: a client that sees the metadata record knows the
capture of its run is complete (a run that ends at once may wait for it, bounded, before its
Finish). It takes about 0.1 s (the training interpreter listing its packages, with the Git
commands alongside).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

from tracklogd._config import DaemonConfig
from tracklogd._git import Git
from tracklogd._gpu import Gpus
from tracklogd._metadata import PACKAGES_TIMEOUT, capture_metadata
from tracklogd._ratelimit import RateLimitedLog
from tracklogd._records import file_records, metadata_record
from tracklogd._runs import RunRegistry, RunSlot
from tracklogd._sampler import SystemSampler
from tracklogd._sources import NvmlLike, PsutilLike, load_nvml, psutil_module

log = logging.getLogger(__name__)

MAX_CONCURRENT_CAPTURES = 2  # metadata captures run git and an interpreter; a burst of runs queues

Emit = Callable[[bytes], object]


class SamplerThread:
    """Ticks a ``SystemSampler`` every ``sample_interval`` seconds while it has runs. Thread-safe.

    The thread starts with the first run and ends when the last one leaves, so a daemon with no
    attached run does not sample at all. Each run is held with the stream (``token``) that added it:
    a stale stream ending after its client re-attached does not remove the run.
    """

    def __init__(self, sampler: SystemSampler, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._sampler = sampler
        self._clock = clock
        self._lock = threading.Lock()
        self._emits: dict[str, tuple[object, Emit]] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False
        self._ratelog = RateLimitedLog(log)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def add(self, key: str, token: object, pid: int, run_dir: str, emit: Emit) -> None:
        with self._lock:
            if self._closed:
                return
            self._sampler.add(key, pid, run_dir)
            self._emits[key] = (token, emit)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tracklogd-sampler", daemon=True)
                self._thread.start()

    def remove(self, key: str, token: object) -> None:
        with self._lock:
            held = self._emits.get(key)
            if held is None or held[0] is not token:
                return
            del self._emits[key]
            self._sampler.remove(key)
            if not self._emits:
                self._wake.set()  # the thread ends now rather than at its next tick

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            for key in list(self._emits):
                self._sampler.remove(key)
            self._emits.clear()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def _run(self) -> None:
        interval = self._sampler.sample_interval
        next_at = self._clock() + interval
        while True:
            self._wake.wait(max(0.0, next_at - self._clock()))
            with self._lock:
                if self._closed or not self._emits:
                    self._thread = None
                    self._wake.clear()
                    return
                if self._wake.is_set():  # woken for a run that left, but others remain
                    self._wake.clear()
                    if self._clock() < next_at:
                        continue
                try:
                    reports = self._sampler.tick()
                except Exception:  # the sampler guards every counter; this is a bug, keep going
                    self._ratelog.log(logging.ERROR, "tick", "system metrics sampling failed", exc_info=True)
                    reports = []
                sends = [(self._emits[key][1], payload) for key, payload in reports if key in self._emits]
            for emit, payload in sends:  # outside the lock: emit takes the run's slot lock
                try:
                    emit(payload)
                except Exception:
                    self._ratelog.log(logging.ERROR, "emit", "sending system metrics failed", exc_info=True)
            now = self._clock()
            next_at += interval
            if next_at <= now:  # late (suspended, overloaded): skip the missed ticks
                next_at = now + interval


class Capture:
    def __init__(
        self,
        registry: RunRegistry,
        config: DaemonConfig,
        *,
        source: PsutilLike | None = None,
        nvml: NvmlLike | Callable[[], NvmlLike | None] | None = load_nvml,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        git: Git | None = None,
        packages_timeout: float = PACKAGES_TIMEOUT,
    ) -> None:
        self._registry = registry
        self._config = config
        self._source = source if source is not None else psutil_module()
        self._gpus = Gpus(nvml)
        self._wall_clock = wall_clock
        self._git = git
        self._packages_timeout = packages_timeout
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT_CAPTURES)
        self._threads_lock = threading.Lock()
        self._threads: set[threading.Thread] = set()  # metadata captures still running
        self.sampler: SamplerThread | None = None
        if config.system_metrics:
            sampler = SystemSampler(
                self._source,
                self._gpus,
                sample_interval=config.system_sample_interval,
                report_interval=config.system_report_interval,
                clock=clock,
                wall_clock=wall_clock,
            )
            self.sampler = SamplerThread(sampler, clock=clock)

    def captures_metadata(self, new_process: bool) -> bool:
        """Whether this attach gets a metadata capture (``begin_metadata``; told to the client)."""
        return self._config.capture_metadata and new_process

    def attached(self, slot: RunSlot, stream: object, pid: int) -> None:
        """The run's Attached went out on ``stream``: its system metrics start. Never blocks long
        and never raises (the stream must go on whatever happens here)."""
        try:
            if self.sampler is not None:
                emit = functools.partial(self._registry.send_record, slot, pid)
                self.sampler.add(slot.key, stream, pid, str(slot.run_dir), emit)
        except Exception:
            log.exception("starting the capture for run %s failed", slot.key)

    def begin_metadata(self, slot: RunSlot, pid: int) -> None:
        """Starts the run's metadata capture on a thread of its own, for an attach that
        ``captures_metadata``. The service calls it once the run's first frames are acked: the
        capture's Python work holds the daemon's GIL, and init() in the training process waits for
        that ack. Never raises."""
        try:
            thread = threading.Thread(
                target=self._capture,
                args=(slot, pid, self._wall_clock()),
                name="tracklogd-metadata",
                daemon=True,
            )
            with self._threads_lock:
                self._threads.add(thread)
            thread.start()
        except Exception:
            log.exception("starting the metadata capture for run %s failed", slot.key)

    def detached(self, slot: RunSlot, stream: object) -> None:
        """``stream`` ended; never raises. A metadata capture still running for it finds the run
        detached when it sends, and drops its records."""
        try:
            if self.sampler is not None:
                self.sampler.remove(slot.key, stream)
        except Exception:
            log.exception("stopping the capture for run %s failed", slot.key)

    def join(self, timeout: float) -> bool:
        """Waits for the metadata captures under way; whether they all ended in time."""
        deadline = time.monotonic() + timeout
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def close(self) -> None:
        """Stops the sampler and NVML. Metadata captures are not waited for (each is bounded by its
        timeouts; with the streams gone they send nothing)."""
        if self.sampler is not None:
            self.sampler.close()
        self._gpus.close()

    def _capture(self, slot: RunSlot, pid: int, started_at: float) -> None:
        # A background thread: never raises. A client gone before the end gets nothing more.
        try:
            with self._slots:
                if slot.stream is None or slot.pid != pid:
                    return  # detached while waiting for a turn
                captured = capture_metadata(
                    pid,
                    str(slot.run_dir),
                    started_at=started_at,
                    source=self._source,
                    gpus=self._gpus,
                    git=self._git,
                    packages_timeout=self._packages_timeout,
                )
            payloads = [chunk for name, data in captured.files.items() for chunk in file_records(name, data)]
            payloads.append(metadata_record(captured.metadata))  # last: the capture is complete
            for payload in payloads:
                if not self._registry.send_record(slot, pid, payload):
                    log.debug("run %s: its client left before its metadata was sent", slot.key)
                    return
            log.info("run %s: sent metadata and %s", slot.key, ", ".join(captured.files) or "no files")
        except Exception:
            log.exception("capturing the metadata of run %s failed", slot.key)
        finally:
            with self._threads_lock:
                self._threads.discard(threading.current_thread())
