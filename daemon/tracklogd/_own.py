"""The daemon's own records of a run: system metrics, metadata and the files it captures.

They never travel through the training process (DESIGN.md, "Two writers per run, one owner per
file"): the daemon appends them to a spool of its own in the run directory,
``run-<id>.daemon.tlog``, numbered from 1 in a sequence of its own, and the sync loop sends them with
``IngestRequest.source = SOURCE_DAEMON``. So they keep flowing while the training process hangs and
are kept when it dies, and cost it no CPU.

Invariants:
- ``OwnSpool`` is the only writer of its file: every append holds ``lock`` (the sampler thread and
  the metadata captures append from different threads). The file is opened on first use, cutting a
  torn tail as the client's spool is, so a daemon restart continues the sequence where it ended.
- ``producers`` names what may still append (``"system"`` while the run is sampled, ``"metadata"``
  while its capture runs). A run is retired only when it is empty and every frame is synced: the
  daemon keeps capturing after the client's Finish until its capture is done.
- Frames are acknowledged by nobody: the daemon is their writer, so a frame is safe once appended
  (flushed to the OS at once, fsynced with the daemon's fsync groups and at close).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from tracklog._spool import SpoolWriter
from tracklog._torn import describe, seal_torn_end
from tracklog.v1 import records_pb2, store_pb2
from tracklogd._errors import StoreRejected
from tracklogd._retry import RetryPolicy
from tracklogd._store_client import GrpcStoreClient, StoreClientFactory
from tracklogd._sync import CLI_RETRY, ProgressCallback, SpoolSync, SyncResult

log = logging.getLogger(__name__)

OWN_SUFFIX = ".daemon.tlog"


def own_spool_path(run_dir: str | Path, run_id: str) -> Path:
    return Path(run_dir) / f"run-{run_id}{OWN_SUFFIX}"


def is_own_spool(path: Path) -> bool:
    return path.name.endswith(OWN_SUFFIX)


def own_spool_beside(client_spool: str | Path) -> Path:
    """The daemon's spool of the run whose client spool is ``client_spool`` (``run-<id>.tlog``)."""
    path = Path(client_spool)
    return path.with_name(path.name[: -len(".tlog")] + OWN_SUFFIX)


class OwnSpool:
    """One run's daemon spool and its sync state. Thread-safe for appends."""

    def __init__(self, path: Path, ref: records_pb2.RunRef) -> None:
        self.path = path
        self.lock = threading.Lock()
        client_spool = path.with_name(path.name[: -len(OWN_SUFFIX)] + ".tlog")
        self.sync = SpoolSync(path, ref, source=store_pb2.SOURCE_DAEMON, token_spool=client_spool)
        self.producers: set[str] = set()  # guarded by ``lock``
        self.durable_seq = 0  # the last frame written (readable without the lock)
        self._writer: SpoolWriter | None = None
        self._closed = False  # the run was retired or the daemon stops: appends are dropped

    def open_existing(self) -> None:
        """At recovery: opens the spool if a previous daemon left one, so that ``durable_seq`` tells
        what is left to sync. Raises OSError or SpoolError."""
        with self.lock:
            if self._writer is None and self.path.exists():
                self._open()

    def append(self, payloads: Sequence[bytes]) -> int:
        """Appends records as the next frames; returns the last seq (0 when the spool is closed).
        Raises OSError or SpoolError."""
        with self.lock:
            if self._closed:
                return 0
            writer = self._writer if self._writer is not None else self._open()
            first = writer.last_seq + 1
            self.durable_seq = writer.append(enumerate(payloads, first))
            return self.durable_seq

    def begin(self, producer: str) -> bool:
        """``producer`` starts appending; False when the spool is already closed."""
        with self.lock:
            if self._closed:
                return False
            self.producers.add(producer)
            return True

    def end(self, producer: str) -> None:
        with self.lock:
            self.producers.discard(producer)

    def busy(self) -> bool:
        """Something may still append, or frames wait for the store."""
        return bool(self.producers) or self.unsynced()

    def unsynced(self) -> bool:
        return self.sync.synced < self.durable_seq

    def fsync(self) -> None:
        with self.lock:
            if self._writer is not None:
                self._writer.sync()

    def close(self) -> None:
        """Fsyncs and closes the file; later appends are dropped. Raises OSError."""
        with self.lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def _open(self) -> SpoolWriter:
        # Lock held.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = self._writer = SpoolWriter(self.path)
        if writer.recovery.truncated_bytes:
            cut = writer.recovery.truncated_bytes
            log.warning("recovered %s: cut a torn tail of %d bytes", self.path, cut)
            # Its writer was a daemon that is gone: what the end held is lost, and the run says so.
            try:
                lost = seal_torn_end(writer)
            except OSError as exc:
                log.error("cannot record the loss of the torn end of %s on its run: %s", self.path, exc)
            else:
                if lost is not None:
                    log.warning("damaged spool %s: %s (recorded on the run)", self.path, describe(lost))
        self.durable_seq = writer.last_seq
        return writer


def sync_own_spool(
    client_spool: str | Path,
    server_target: str,
    *,
    ref: records_pb2.RunRef | None = None,
    progress: ProgressCallback | None = None,
    retry: RetryPolicy = CLI_RETRY,
    stop: threading.Event | None = None,
    client_factory: StoreClientFactory = GrpcStoreClient,
) -> SyncResult | None:
    """``tracklog sync`` for the daemon's spool beside ``client_spool`` (None when there is none):
    pushes what the store lacks, after the client's spool (the store needs the run's RunStart). The
    run is read from the client spool's RunStart unless ``ref`` is given.
    Raises StoreUnavailable, StoreRejected (also when the store does not know the run), SpoolUnusable.
    """
    path = own_spool_beside(client_spool)
    if not path.exists():
        return None
    if ref is None:
        ref = SpoolSync(client_spool).ref  # from the client spool's RunStart
    sync = SpoolSync(path, ref, source=store_pb2.SOURCE_DAEMON, token_spool=client_spool)
    client = client_factory(server_target)
    try:
        retry.call(lambda: sync.push(client, progress), stop=stop or threading.Event())
    finally:
        client.close()
    if sync.waiting:
        raise StoreRejected(f"the store does not know run {sync.result().ref} yet: sync its run-*.tlog first")
    return sync.result()
