"""Automatic capture for a run: system metrics and metadata, written to the daemon's own spool.

What the daemon makes for a run never travels through the training process: it is appended to the
run's own spool (``_own``, ``RunRegistry.append_own``), a sequence of the daemon's own that the sync
loop sends to the store. So it keeps coming while the training process hangs and is kept when it is
killed, and costs it nothing.

- ``SamplerThread`` runs the one ``SystemSampler`` of the daemon on a thread that exists only while
  at least one run is sampled.
- ``Capture`` is what the service and the daemon call: ``attached()`` after a run's Attached went
  out (the run joins the sampler), ``begin_metadata()`` once its first frames are acked (for a new
  training process), ``run_ended()`` once its Finish is written or its training process is gone
  (the sampler reports the run's last, partial window and lets it go).

A run's sampling and its metadata capture are producers of its own spool (``OwnSpool.producers``):
the run is retired only once both are done and synced, so a run shorter than the capture (about
0.1 s: the training interpreter listing its packages, with the Git commands alongside) still gets
its metadata, after the client's Finish. The capture writes the files first (``requirements.txt``,
``diff.patch`` when the tree is dirty, ``metadata.json``) and the ``metadata`` record last.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

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
SYSTEM = "system"  # the producers of a run's own spool (OwnSpool.producers)
METADATA = "metadata"

Emit = Callable[[bytes], object]


class SamplerThread:
    """Ticks a ``SystemSampler`` every ``sample_interval`` seconds while it has runs. Thread-safe.

    The thread starts with the first run and ends when the last one leaves, so a daemon with no
    sampled run does not sample at all. A run stays until ``finish``: a detached client whose process
    still lives (hung, or reconnecting) is sampled on.

    Locks: ``_emit_lock`` is held while reports go out, then ``_lock`` (the sampler and the runs)
    while they are made: a run's last window (``finish``) is therefore emitted after every earlier
    report of the run, and nothing is emitted for it afterwards.
    """

    def __init__(self, sampler: SystemSampler, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._sampler = sampler
        self._clock = clock
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._emits: dict[str, Emit] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False
        self._ratelog = RateLimitedLog(log)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def sampling(self, key: str) -> bool:
        with self._lock:
            return key in self._emits

    def add(self, key: str, pid: int, run_dir: str, emit: Emit) -> bool:
        """Samples the run (training process ``pid``) from now on; whether it was new. A run already
        sampled for the same pid keeps its window (a client that re-attached)."""
        with self._lock:
            if self._closed:
                return False
            self._sampler.add(key, pid, run_dir)
            new = key not in self._emits
            self._emits[key] = emit
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tracklogd-sampler", daemon=True)
                self._thread.start()
            return new

    def finish(self, key: str) -> bool:
        """Stops sampling the run after emitting its last, partial window; whether it was sampled."""
        with self._emit_lock:
            with self._lock:
                emit = self._emits.pop(key, None)
                if emit is None:
                    return False
                payload = self._sampler.finish(key)
                if not self._emits:
                    self._wake.set()  # the thread ends now rather than at its next tick
            if payload is not None:
                self._emit(emit, payload)
        return True

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

    def _emit(self, emit: Emit, payload: bytes) -> None:
        try:
            emit(payload)
        except Exception:
            self._ratelog.log(logging.ERROR, "emit", "writing system metrics failed", exc_info=True)

    def _run(self) -> None:
        interval = self._sampler.sample_interval
        next_at = self._clock() + interval
        while True:
            self._wake.wait(max(0.0, next_at - self._clock()))
            with self._emit_lock:
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
                        self._ratelog.log(
                            logging.ERROR, "tick", "system metrics sampling failed", exc_info=True
                        )
                        reports = []
                    sends = [(self._emits[key], payload) for key, payload in reports if key in self._emits]
                for emit, payload in sends:  # outside ``_lock``: emit takes the run's own spool lock
                    self._emit(emit, payload)
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

    def attached(self, slot: RunSlot, pid: int) -> None:
        """The run's Attached went out (or the run was recovered while its training process
        ``pid`` lives): its system metrics start. (A spool ending with a Finish may be resumed by
        this client; if it is not, ``run_ended`` follows when the stream ends.) Never blocks long
        and never raises (the stream must go on whatever happens here)."""
        try:
            if self.sampler is None or not slot.own.begin(SYSTEM):
                return
            registry = self._registry

            def emit(payload: bytes) -> None:
                registry.append_own(slot, [payload])

            self.sampler.add(slot.key, pid, str(slot.run_dir), emit)
        except Exception:
            log.exception("starting the capture for run %s failed", slot.key)

    def run_ended(self, slot: RunSlot) -> None:
        """The run's Finish is written, or its training process is gone: its sampling ends with
        its last window. The metadata capture, if under way, goes on. Never raises."""
        try:
            if self.sampler is not None:
                self.sampler.finish(slot.key)
            if SYSTEM in slot.own.producers:
                self._registry.own_ended(slot, SYSTEM)
        except Exception:
            log.exception("ending the capture for run %s failed", slot.key)

    def begin_metadata(self, slot: RunSlot, pid: int) -> None:
        """Starts the run's metadata capture on a thread of its own, for an attach that
        ``captures_metadata``. The service calls it once the run's first frames are acked: the
        capture's Python work holds the daemon's GIL, and init() in the training process waits for
        that ack. The capture goes on whatever the training process does. Never raises."""
        try:
            if not slot.own.begin(METADATA):
                return  # the run was retired, or the daemon stops
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
        timeouts; with the spools closed they write nothing, and the next daemon does not redo them)."""
        if self.sampler is not None:
            self.sampler.close()
        self._gpus.close()

    def _capture(self, slot: RunSlot, pid: int, started_at: float) -> None:
        # A background thread: never raises; always ends its producer (the run may then retire).
        try:
            with self._slots:
                captured = capture_metadata(
                    pid,
                    str(slot.run_dir),
                    started_at=started_at,
                    source=self._source,
                    gpus=self._gpus,
                    git=self._git,
                    packages_timeout=self._packages_timeout,
                )
            files = dict(captured.files)
            document = json.dumps(captured.metadata, indent=2, default=str, ensure_ascii=False) + "\n"
            files["metadata.json"] = document.encode()
            try:  # beside the spools, as the client writes config.json and output.log
                Path(slot.run_dir, "metadata.json").write_bytes(files["metadata.json"])
            except OSError as exc:
                log.warning("run %s: cannot write metadata.json: %s", slot.key, exc)
            payloads = [chunk for name, data in files.items() for chunk in file_records(name, data)]
            payloads.append(metadata_record(captured.metadata))  # last: the capture is complete
            if self._registry.append_own(slot, payloads):
                log.info("run %s: captured metadata and %s", slot.key, ", ".join(files))
        except Exception:
            log.exception("capturing the metadata of run %s failed", slot.key)
        finally:
            with self._threads_lock:
                self._threads.discard(threading.current_thread())
            try:
                self._registry.own_ended(slot, METADATA)
            except Exception:
                log.exception("ending the metadata capture of run %s failed", slot.key)
