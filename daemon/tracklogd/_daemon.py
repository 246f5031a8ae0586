"""The daemon object: the gRPC server on the unix socket and the threads behind it, wired together.

``Daemon(home).start()`` recovers pending runs, serves the Daemon service and starts the sync loop,
heartbeats, the local store server and a ticker (fsync groups, vanished clients, idle exit); each
attached run also gets the automatic capture (system metrics, metadata: ``_capture``).
``close()`` stops all of it. The process around it (lock, logging, signals) is ``_process``; tests
build a Daemon in-process and pass the seams: clock, stop event, store-client factory, pid check,
local server, and the metrics sources (psutil-like counters, NVML).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from tracklog import __version__
from tracklog._home import (
    daemon_info_path,
    daemon_target,
    ensure_home,
    pending_dir,
    socket_path,
)
from tracklog._spool import FileOps
from tracklog.v1 import daemon_pb2, daemon_pb2_grpc
from tracklogd._capture import Capture
from tracklogd._config import GRPC_MESSAGE_OPTIONS, DaemonConfig
from tracklogd._heartbeat import Heartbeats
from tracklogd._local_server import LocalServer, LocalServerLike
from tracklogd._pending import PendingDir
from tracklogd._pids import process_alive
from tracklogd._probe import probe_run
from tracklogd._records import run_url
from tracklogd._retry import RetryPolicy
from tracklogd._runs import RunRegistry, RunSlot
from tracklogd._service import DaemonService
from tracklogd._sources import NvmlLike, PsutilLike, load_nvml
from tracklogd._store_client import GrpcStoreClient, StoreClientFactory, StorePool
from tracklogd._syncloop import DAEMON_RETRY, SyncLoop

log = logging.getLogger(__name__)

URGENT_BACKLOG = 32  # unsynced frames that are pushed at once instead of coalesced

MAX_STREAMS = 256  # concurrent RunStream calls (each holds one server thread)


class Daemon:
    def __init__(
        self,
        home: Path,
        *,
        config: DaemonConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        stop_event: threading.Event | None = None,
        store_client_factory: StoreClientFactory = GrpcStoreClient,
        pid_alive: Callable[[int], bool] = process_alive,
        local_server: LocalServerLike | None = None,
        retry: RetryPolicy = DAEMON_RETRY,
        metrics_source: PsutilLike | None = None,
        nvml: NvmlLike | Callable[[], NvmlLike | None] | None = load_nvml,
        spool_ops: FileOps | None = None,
    ) -> None:
        self.home = ensure_home(Path(home).absolute())
        self.config = config if config is not None else DaemonConfig.from_env()
        self.target = daemon_target(self.home)
        self.pid = os.getpid()
        self.started_at = 0.0
        self._clock = clock
        self._wall_clock = wall_clock
        # Set once to stop: every wait in the daemon is a wait on it (or is also woken by it).
        self.stopped = stop_event if stop_event is not None else threading.Event()
        self._wakeup = threading.Event()  # wakes the ticker early: shutdown, or a run to watch
        self._pool = StorePool(store_client_factory)
        self._local = local_server or LocalServer(
            self.home, self._pool, self.stopped, heartbeat_timeout=self.config.heartbeat_timeout
        )
        self._registry = RunRegistry(
            PendingDir(pending_dir(self.home)),
            pid_alive=pid_alive,
            stopping=self.stopped,
            wall_clock=wall_clock,
            fsync_each_batch=self.config.fsync_interval <= 0,
            on_frames=self._on_frames,
            on_watch=self._wakeup.set,
            on_gone=self._run_gone,
            spool_ops=spool_ops,
        )
        self._sync = SyncLoop(
            self._registry, self._pool, self._resolve, self.stopped, retry=retry, clock=clock
        )
        self._heartbeats = Heartbeats(
            self._registry, self._pool, self._resolve, self.stopped, self.config.heartbeat_interval
        )
        # psutil (or a fake) for system metrics and metadata; NVML (or a loader of it) for GPUs.
        self._capture = Capture(
            self._registry, self.config, source=metrics_source, nvml=nvml, wall_clock=wall_clock
        )
        self._ticker = threading.Thread(target=self._tick, name="tracklogd-ticker", daemon=True)
        self._server: grpc.Server | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> str:
        """Recovers pending runs and starts serving; returns the gRPC target. Raises OSError or
        RuntimeError when the socket cannot be bound."""
        self.started_at = self._wall_clock()
        self._local.start(lambda: self._sync.nudge(""))
        for slot in self._registry.recover():
            if slot.watching:  # its training process lives (it may hang): sample it on
                self._capture.attached(slot, slot.pid)
            self._sync.wake(slot.server)
        path = socket_path(self.home)
        path.unlink(missing_ok=True)  # a stale socket of a dead daemon (we hold the lock)
        server = grpc.server(
            ThreadPoolExecutor(max_workers=MAX_STREAMS + 8, thread_name_prefix="tracklogd-rpc"),
            options=GRPC_MESSAGE_OPTIONS,
        )
        service = DaemonService(
            self._registry,
            run_url=self._run_url,
            status=self.status,
            shutdown=self.request_shutdown,
            capture=self._capture,
            ack_interval=self.config.ack_interval,
            clock=self._clock,
            probe=lambda request: probe_run(self._registry, self._pool, self._resolve, request, self.stopped),
        )
        daemon_pb2_grpc.add_DaemonServicer_to_server(service, server)
        if not server.add_insecure_port(self.target):
            raise RuntimeError(f"cannot listen on {path}")
        os.chmod(path, 0o600)  # only this user may talk to the daemon (its directory is 0700 too)
        server.start()
        self._server = server
        self._heartbeats.thread.start()
        self._ticker.start()
        self._write_info()
        log.info("tracklogd %s (pid %d) serving on %s", __version__, self.pid, self.target)
        return self.target

    def request_shutdown(self) -> None:
        """Asks the daemon to stop; ``wait()`` returns and the owner calls ``close()``."""
        self.stopped.set()
        self._wakeup.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until shutdown is requested (or ``timeout``); returns whether it was."""
        return self.stopped.wait(timeout)

    def close(self) -> None:
        """Stops serving and every thread, makes every spool durable, stops the local server."""
        if self._closed:
            return
        self._closed = True
        self.request_shutdown()
        if self._server is not None:
            self._registry.abort_streams(grpc.StatusCode.UNAVAILABLE, "tracklogd is shutting down")
            self._server.stop(grace=1.0).wait(5.0)
        self._capture.close()  # the sampler thread ends; NVML shuts down
        self._pool.close()  # cancels calls in flight; their batches are resent by the next daemon
        self._sync.join(5.0)
        for thread in (self._heartbeats.thread, self._ticker):
            if thread.is_alive():
                thread.join(5.0)
        self._registry.close()
        self._local.close()
        self._remove_own_files()
        log.info("tracklogd (pid %d) stopped", self.pid)

    # -- status ------------------------------------------------------------------------------------

    def status(self) -> daemon_pb2.StatusResponse:
        now = self._clock()
        runs = [
            daemon_pb2.RunStatus(
                ref=slot.ref,
                run_dir=str(slot.run_dir),
                attached=slot.attached,
                durable_seq=slot.durable_seq,
                synced_seq=slot.sync.synced,
                server=slot.server or (self._local.target() or ""),
                # Read without the slot's lock: a moment stale at worst, and callers ask again. A
                # run the store refused (parked) is not on its way: waiting for it would not help.
                settling=slot.complete()
                and (bool(slot.own.producers) or (slot.unsynced() and slot.parked_until <= now)),
                refused=slot.parked_reason if slot.parked_until == math.inf else "",
            )
            for slot in self._registry.snapshot()
        ]
        return daemon_pb2.StatusResponse(
            pid=self.pid,
            version=__version__,
            local_server=self._local.target() or "",
            runs=runs,
            started_at=self.started_at,
        )

    # -- internals ---------------------------------------------------------------------------------

    def _resolve(self, server: str) -> str | None:
        return server or self._local.target()

    def _run_url(self, slot: RunSlot) -> str:
        # Attach answers at once: only a ServerInfo already cached can give the URL.
        target = self._resolve(slot.server)
        info = self._pool.info(target) if target else None
        if info is not None:
            return run_url(info.http_url, slot.ref)
        if not slot.server and (base := self._local.http_url()):  # still starting, ports chosen
            return run_url(base, slot.ref)
        return ""

    def _run_gone(self, slot: RunSlot) -> None:
        self._capture.run_ended(slot)

    def _on_frames(self, slot: RunSlot) -> None:
        backlog = slot.durable_seq - slot.sync.synced
        urgent = bool(slot.finish_seq) or not slot.attached or backlog >= URGENT_BACKLOG
        self._sync.wake(slot.server, urgent=urgent)

    def _tick(self) -> None:
        """fsync groups, vanished clients and the idle timeout; never raises."""
        config = self.config
        last_fsync = self._clock()
        idle_since: float | None = None
        while True:
            wait = config.watch_interval if self._registry.watching_any() else 1.0
            if config.fsync_interval > 0:
                wait = min(wait, config.fsync_interval)
            self._wakeup.wait(wait)
            self._wakeup.clear()
            if self.stopped.is_set():
                return
            try:
                now = self._clock()
                if config.fsync_interval > 0 and now - last_fsync >= config.fsync_interval:
                    self._registry.fsync_all()
                    last_fsync = now
                self._registry.check_watched()
                if self._registry.busy(now):
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= config.idle_timeout:
                    log.info("idle for %.0fs with nothing to sync; exiting", now - idle_since)
                    self.request_shutdown()
            except Exception:
                log.exception("daemon housekeeping failed")

    def _write_info(self) -> None:
        info = {
            "pid": self.pid,
            "target": self.target,
            "version": __version__,
            "started_at": self.started_at,
        }
        path = daemon_info_path(self.home)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, path)

    def _remove_own_files(self) -> None:
        try:
            if json.loads(daemon_info_path(self.home).read_text()).get("pid") == self.pid:
                daemon_info_path(self.home).unlink()
        except (OSError, ValueError, AttributeError):
            pass
        socket_path(self.home).unlink(missing_ok=True)
