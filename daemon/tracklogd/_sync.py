"""Pushing one spool to one store server: in order, in bounded batches, resumable and idempotent.

Used by the daemon's sync loop for every pending run, and by ``tracklog sync`` (``sync_spool``) for
runs written offline. The acked high-water mark lives beside the spool (``run-<id>.synced``), written
after every acked request, so a push interrupted anywhere resumes where the server stands; the server
applies each (run, seq) at most once, so resending a batch whose ack was lost duplicates nothing.

A record the store refuses never holds up the rest of the run:

* The store refuses a bad record on its own (``IngestResponse.refused``): the rest of the batch is
  applied; the refusal is logged, rate-limited per run, and counted in ``refused``.
* A store that refuses the whole request as INVALID_ARGUMENT (one that predates per-record refusals)
  gets the batch again one frame at a time; a frame it refuses alone is sent once more as an empty
  record at the same seq (which any store applies as "nothing"), so the seqs stay consecutive and the
  push goes on. Only if the store refuses that too (the run itself is refused) does the push stop
  with StoreRejected. The spool keeps every original frame.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from tracklog._spool import MAGIC, FrameAt, SpoolError, read_synced, scan, write_synced
from tracklog.v1 import records_pb2, store_pb2
from tracklogd._errors import SpoolUnusable, StoreRejected
from tracklogd._ratelimit import RateLimitedLog
from tracklogd._records import is_finish, ref_key, run_start
from tracklogd._retry import RetryPolicy
from tracklogd._store_client import GrpcStoreClient, StoreClient, StoreClientFactory

_ratelog = RateLimitedLog(logging.getLogger(__name__))

MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_BATCH_FRAMES = 256

# `tracklog sync` waits for a server that is down for a while, then reports the error.
CLI_RETRY = RetryPolicy(initial=0.2, maximum=3.0, give_up_after=30.0)
# What a refused frame is replaced with on the wire: a history record without rows (every store
# version applies it as "nothing"; its seq counts).
SKIPPED_RECORD = records_pb2.Record(history=b"").SerializeToString()


@dataclass(frozen=True, slots=True)
class SyncProgress:
    ref: str  # entity/project/id
    synced_seq: int  # every frame up to this seq is on the server
    frames_sent: int  # by this push so far
    bytes_sent: int


@dataclass(frozen=True, slots=True)
class SyncResult:
    spool: Path
    ref: str
    synced_seq: int
    last_seq: int  # the last frame found in the spool
    frames_sent: int
    finished: bool  # the run's Finish record is on the server
    refused: int = 0  # records the server refused (each cost only itself)


ProgressCallback = Callable[[SyncProgress], None]


class SpoolSync:
    """One spool's sync state. Not thread-safe: one thread pushes a given spool at a time.

    Invariant: ``synced`` is the server's applied_through as last acked (also persisted), and
    ``_offset``, when not None, is the file offset just past frame ``synced`` (where the next batch
    starts), so steady-state pushes read only new frames; None means "find it by scanning".
    """

    def __init__(
        self,
        spool: str | Path,
        ref: records_pb2.RunRef | None = None,
        *,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_batch_frames: int = MAX_BATCH_FRAMES,
    ) -> None:
        self.spool = Path(spool)
        self.synced = read_synced(self.spool)
        self.finish_seq = 0  # seq of the Finish that is the last frame read so far, else 0
        self.last_seq = 0  # the highest seq read from the spool so far
        self.frames_sent = 0  # by this object, over all pushes
        self.bytes_sent = 0
        self.refused = 0  # records the server refused, over all pushes
        self._ref = ref
        self._offset: int | None = None
        self._max_bytes = max_batch_bytes
        self._max_frames = max_batch_frames

    @property
    def ref(self) -> records_pb2.RunRef:
        """The run, as given or else read from the spool's RunStart. Raises SpoolUnusable."""
        if self._ref is None:
            with self._scan(len(MAGIC)) as frames:
                first = next(frames, None)
            start = run_start(first.payload) if first is not None and first.seq == 1 else None
            if start is None:
                raise SpoolUnusable(f"{self.spool} does not begin with a run start record")
            self._ref = records_pb2.RunRef()
            self._ref.CopyFrom(start.ref)
        return self._ref

    @property
    def done(self) -> bool:
        """The run's Finish record and everything before it are on the server."""
        return self.finish_seq > 0 and self.synced >= self.finish_seq

    def push(self, client: StoreClient, progress: ProgressCallback | None = None) -> int:
        """Sends every complete frame after the high-water mark, in batches; returns how many.

        Raises StoreError from the client (state stays consistent: call again to resume),
        StoreRejected when the server refuses frames that continue what it holds, SpoolUnusable.
        """
        ref = self.ref
        sent = 0
        while True:
            if self._offset is None:
                self.locate()
            frames, end, size = self._next_batch()
            if not frames:
                return sent
            first, last = frames[0].seq, frames[-1].seq
            try:
                response = client.ingest(ref, frames)
            except StoreRejected as exc:
                if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                response = self._one_by_one(client, ref, frames, exc)
            if response.refused:
                self._note_refused(ref, response.refused)
            applied = response.applied_through
            if applied < first:  # nothing applied: either a gap on our side of the server ...
                if applied == self.synced:  # ... or a refusal of frames that continue it exactly
                    raise StoreRejected(
                        f"the server refused frames {first}-{last} of {ref_key(ref)}, which continue "
                        f"the seq {applied} it holds"
                    )
                self._offset = None  # resend from applied + 1, wherever that is in the spool
            elif response.accepted and applied == last:
                self._offset = end
                sent += len(frames)
                self.frames_sent += len(frames)
                self.bytes_sent += size
            else:
                self._offset = None
            self.synced = applied
            try:
                write_synced(self.spool, applied)
            except OSError as exc:  # the mark only saves resending: the server drops duplicates
                _ratelog.warning(
                    f"hwm:{self.spool}", "cannot record sync progress of %s: %s", self.spool, exc
                )
            if progress is not None:
                progress(SyncProgress(ref_key(ref), applied, self.frames_sent, self.bytes_sent))

    def _one_by_one(
        self,
        client: StoreClient,
        ref: records_pb2.RunRef,
        frames: list[records_pb2.Frame],
        rejected: StoreRejected,
    ) -> store_pb2.IngestResponse:
        """The batch again, a frame per request, skipping a frame the server refuses alone (see the
        module docstring). Returns the last answer, with every refusal in ``refused``."""
        response = store_pb2.IngestResponse()
        refused: list[store_pb2.RefusedRecord] = []
        for frame in frames:
            try:
                response = client.ingest(ref, [frame])
            except StoreRejected as exc:
                if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                try:
                    response = client.ingest(ref, [records_pb2.Frame(seq=frame.seq, record=SKIPPED_RECORD)])
                except StoreRejected:
                    raise rejected from exc  # not the record: the server refuses the run itself
                refused.append(store_pb2.RefusedRecord(seq=frame.seq, reason=str(exc)))
            refused.extend(response.refused)
            if not response.accepted or response.applied_through < frame.seq:
                break  # a gap or a refusal of the run: push() decides what follows
        del response.refused[:]
        response.refused.extend(refused)
        return response

    def _note_refused(self, ref: records_pb2.RunRef, refused: Sequence[store_pb2.RefusedRecord]) -> None:
        self.refused += len(refused)
        first = refused[0]
        _ratelog.warning(
            f"refused:{ref_key(ref)}",
            "the store refused %d record(s) of run %s, which are skipped (%d so far); record %d: %s",
            len(refused),
            ref_key(ref),
            self.refused,
            first.seq,
            first.reason,
        )

    def result(self) -> SyncResult:
        return SyncResult(
            self.spool,
            ref_key(self.ref),
            self.synced,
            max(self.last_seq, self.synced),
            self.frames_sent,
            self.done,
            self.refused,
        )

    def _scan(self, start: int) -> _ScanIter:
        return _ScanIter(self.spool, start)

    def locate(self, to_end: bool = False) -> None:
        """Finds where the next push starts (just past frame ``synced``). With ``to_end``, reads on
        to the last frame, so that ``last_seq`` and ``finish_seq`` describe the whole spool."""
        offset = len(MAGIC)
        with self._scan(offset) as frames:
            for frame in frames:
                if frame.seq <= self.synced:
                    offset = frame.end
                elif not to_end:
                    break
                self._note(frame.seq, frame.payload)
        self._offset = offset

    def _next_batch(self) -> tuple[list[records_pb2.Frame], int, int]:
        assert self._offset is not None
        batch: list[records_pb2.Frame] = []
        end, size = self._offset, 0
        with self._scan(self._offset) as frames:
            for frame in frames:
                if batch and (len(batch) >= self._max_frames or size + len(frame.payload) > self._max_bytes):
                    break
                end = frame.end
                self._note(frame.seq, frame.payload)
                if frame.seq <= self.synced:
                    continue
                batch.append(records_pb2.Frame(seq=frame.seq, record=frame.payload))
                size += len(frame.payload)
        return batch, end, size

    def _note(self, seq: int, payload: bytes) -> None:
        # Frames are noted in seq order, so finish_seq ends up naming a Finish only if it is the
        # last frame read (a resumed run continues after its first Finish).
        if seq > self.last_seq:
            self.last_seq = seq
            self.finish_seq = seq if is_finish(payload) else 0


class _ScanIter:
    """``_spool.scan`` as a context manager that closes the file, with OS and format errors turned
    into SpoolUnusable."""

    def __init__(self, spool: Path, start: int) -> None:
        self._spool = spool
        self._frames = scan(spool, start)

    def __enter__(self) -> _ScanIter:
        return self

    def __exit__(self, *exc: object) -> None:
        close = getattr(self._frames, "close", None)  # a generator: closing it closes the file
        if close is not None:
            close()

    def __iter__(self) -> _ScanIter:
        return self

    def __next__(self) -> FrameAt:
        try:
            return next(self._frames)
        except (OSError, SpoolError) as exc:
            raise SpoolUnusable(f"cannot read {self._spool}: {exc}") from exc


def sync_spool(
    spool_path: str | Path,
    server_target: str,
    *,
    progress: ProgressCallback | None = None,
    ref: records_pb2.RunRef | None = None,
    retry: RetryPolicy = CLI_RETRY,
    stop: threading.Event | None = None,
    client_factory: StoreClientFactory = GrpcStoreClient,
) -> SyncResult:
    """Pushes every frame of one spool that the store at ``server_target`` does not hold yet.

    Resumable and idempotent: run it again after any failure, or on a spool that is still growing.
    The run is read from the spool's RunStart unless ``ref`` is given. Retries transient failures per
    ``retry``; raises StoreUnavailable when the server stays away, StoreRejected when it refuses the
    data, SpoolUnusable when the spool cannot be read.
    """
    sync = SpoolSync(spool_path, ref)
    client = client_factory(server_target)
    try:
        retry.call(lambda: sync.push(client, progress), stop=stop or threading.Event())
    finally:
        client.close()
    return sync.result()
