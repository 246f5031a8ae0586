"""Pushing one spool to one store server: in order, in bounded batches, resumable and idempotent.

Used by the daemon's sync loop for every pending run, and by ``tracklog sync`` (``sync_spool``) for
runs written offline. The acked high-water mark lives beside the spool (``run-<id>.synced``), written
after every acked request, so a push interrupted anywhere resumes where the server stands; the server
applies each (run, seq) at most once, so resending a batch whose ack was lost duplicates nothing.
Every request carries the run's writer token, read from the spool's RunStart: the store accepts a
run's frames only with it (PERMISSION_DENIED otherwise, a StoreRejected: never retried in a loop).

Damaged frames (``_spool.Damage``) are never skipped silently: in their place the store gets one
``FramesLost`` record at the first lost seq, alone at the end of its batch, which the store applies
by noting the loss and continuing the run's seq after the last lost frame. Each damage is logged once
per ``SpoolSync`` and listed in its ``SyncResult`` (``tracklog sync`` prints them).

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
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc

from tracklog import _refs, _settings
from tracklog._spool import Damage, FrameAt, Scan, SpoolError, read_synced, scan, write_synced
from tracklog.v1 import records_pb2, store_pb2
from tracklogd._errors import SpoolUnusable, StoreRejected
from tracklogd._ratelimit import RateLimitedLog
from tracklogd._records import is_finish, ref_key, run_start
from tracklogd._retry import RetryPolicy
from tracklogd._store_client import GrpcStoreClient, StoreClient, StoreClientFactory

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)

MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_BATCH_FRAMES = 256

# `tracklog sync` waits for a server that is down for a while, then reports the error.
CLI_RETRY = RetryPolicy(initial=0.2, maximum=3.0, give_up_after=30.0)
# What a refused frame is replaced with on the wire: a history record without rows (every store
# version applies it as "nothing"; its seq counts).
SKIPPED_RECORD = records_pb2.Record(history=b"").SerializeToString()
# In the daemon's own sequence only its kinds are accepted: an empty system batch changes nothing.
_SKIPPED = {
    store_pb2.SOURCE_CLIENT: SKIPPED_RECORD,
    store_pb2.SOURCE_DAEMON: records_pb2.Record(system=records_pb2.SystemBatch()).SerializeToString(),
}


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
    damage: tuple[Damage, ...] = ()  # damaged stretches met (and reported to the store) by this sync
    tail_bytes: int = 0  # bytes after the last good frame with no good frame after them
    tail_reason: str = ""
    refused: int = 0  # records the server refused (each cost only itself)
    start_lost: bool = False  # frame 1 was damaged: the run was sent as ``ref`` from the file's name


ProgressCallback = Callable[[SyncProgress], None]
# What a sync does with each damaged stretch it meets: log it (the daemon), hand it to a callback, or
# nothing (None: the caller reports ``SyncResult.damage`` itself, as ``tracklog sync`` does).
DamageReport = Literal["log"] | Callable[[Damage], None] | None


class SpoolSync:
    """One spool's sync state. Not thread-safe: one thread pushes a given spool at a time.

    Invariant: ``synced`` is the server's applied_through as last acked (also persisted), and
    ``_offset``, when not None, is a file offset just past frame ``_offset_seq`` <= ``synced`` (where
    the next batch starts: just past frame ``synced`` in the steady state), so pushes read only new
    frames; None means "find it by scanning".
    """

    def __init__(
        self,
        spool: str | Path,
        ref: records_pb2.RunRef | None = None,
        *,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_batch_frames: int = MAX_BATCH_FRAMES,
        source: store_pb2.Source.ValueType = store_pb2.SOURCE_CLIENT,
        token_spool: str | Path | None = None,
        on_damage: DamageReport = "log",
    ) -> None:
        self.spool = Path(spool)
        self._on_damage = on_damage  # once per damaged stretch met: "log", a callback, or None
        # Where the run's writer token is read (its first frame, the RunStart): this spool, or for
        # the daemon's own spool, which has no RunStart, the client's spool beside it.
        self._token_spool = self.spool if token_spool is None else Path(token_spool)
        # SOURCE_DAEMON: the daemon's own spool of the run (``_own``), a sequence of its own on
        # the store, which has no RunStart (``ref`` must be given) and waits for the client's.
        self.source = source
        self.waiting = False  # the store does not know the run yet; pushed again on a later pass
        self.synced = read_synced(self.spool)
        self.finish_seq = 0  # seq of the Finish that is the last frame read so far, else 0
        self.last_seq = 0  # the highest seq read from the spool so far
        self.frames_sent = 0  # by this object, over all pushes
        self.bytes_sent = 0
        self.damage: dict[tuple[int, int], Damage] = {}  # by (offset, first seq): each logged once
        self.tail_bytes = 0  # as the last scan that reached the end found them
        self.tail_reason = ""
        self.refused = 0  # records the server refused, over all pushes
        # Frame 1 (the RunStart) is damaged and no ``ref`` was given: the run is sent under the id of
        # the spool's file name, the default entity and project (``ref_from_name``).
        self.start_lost = False
        self.stop_requested = False  # an ingest's answer said a stop of the run is pending
        self._ref = ref
        self._writer_token: str | None = None  # from the spool's RunStart, once read
        self._offset: int | None = None
        self._offset_seq = 0  # the seq of the frame just before ``_offset`` (0 at the start)
        self._max_bytes = max_batch_bytes
        self._max_frames = max_batch_frames

    @property
    def ref(self) -> records_pb2.RunRef:
        """The run, as given or else read from the spool's RunStart. Raises SpoolUnusable."""
        if self._ref is None:
            with self._scan(None, 0) as items:
                first = next((item for item in items if not isinstance(item, Damage) or item.frames), None)
            if isinstance(first, Damage):  # it lost frame 1: the first of the spool
                self._met(first)
                ref = ref_from_name(self.spool)
                if ref is None:
                    raise SpoolUnusable(
                        f"{self.spool}: frame 1, the run's start record, is damaged ({first.reason}) and "
                        "the file's name does not name a run (run-<id>.tlog); nothing was sent and the "
                        "spool is kept as it is"
                    )
                # The run is created from what is known: its id, the entity and project init()
                # would default to here; the store notes frame 1's loss on it.
                self.start_lost = True
                self._ref = ref
                return ref
            start = run_start(first.payload) if first is not None and first.seq == 1 else None
            if start is None:
                raise SpoolUnusable(f"{self.spool} does not begin with a run start record")
            self._ref = records_pb2.RunRef()
            self._ref.CopyFrom(start.ref)
        return self._ref

    @property
    def writer_token(self) -> str:
        """The run's writer token from the spool's RunStart ("" for a spool from before tokens, or
        while the spool holds no frame yet). Raises SpoolUnusable."""
        if self._writer_token is None:
            start = self._start(self._token_spool)
            if start is None:
                return ""  # asked again at the next push: the daemon may not have written it yet
            self._writer_token = start.writer_token
        return self._writer_token

    def _start(self, spool: Path | None = None) -> records_pb2.RunStart | None:
        if spool is not None and spool != self.spool and not spool.exists():
            return None  # the client's spool is not there (yet): no token to send for now
        with _ScanIter(spool or self.spool, None, 0) as items:
            first = next(items, None)
        # A damaged frame 1 holds no token to read: the store then refuses the run's later frames
        # (reported, never retried in a loop) rather than accept them from anyone.
        if first is None or isinstance(first, Damage) or first.seq != 1:
            return None
        return run_start(first.payload)

    @property
    def done(self) -> bool:
        """The run's Finish record and everything before it are on the server."""
        return self.finish_seq > 0 and self.synced >= self.finish_seq

    def push(
        self, client: StoreClient, progress: ProgressCallback | None = None, *, upto: int | None = None
    ) -> int:
        """Sends every complete frame after the high-water mark, in batches; returns how many.

        ``upto``: send no frame above this seq. The daemon passes the seq its writer has acked, so
        that a frame of a write that failed part way (whole on disk for a moment, then cut back) is
        never sent ahead of the writer.

        Raises StoreError from the client (state stays consistent: call again to resume),
        StoreRejected when the server refuses frames that continue what it holds, SpoolUnusable.
        """
        ref = self.ref
        sent = 0
        while True:
            if self._offset is None:
                self.locate()
            frames, end, size, last = self._next_batch(upto)
            if not frames:
                return sent
            first = frames[0].seq
            try:
                response = client.ingest(ref, frames, self.writer_token, self.source)
            except StoreRejected as exc:
                if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                response = self._one_by_one(client, ref, frames, exc)
            if response.refused:
                self._note_refused(ref, response.refused)
            if response.stop_requested:  # the caller forwards it (and clears this)
                self.stop_requested = True
            applied = response.applied_through
            self.waiting = False
            if applied < first:  # nothing applied: either a gap on our side of the server ...
                if applied == self.synced and self.source == store_pb2.SOURCE_DAEMON:
                    # ... or, for the daemon's own frames, a run whose RunStart the store has not
                    # applied yet (the client's spool goes first; it may be parked or offline).
                    self.waiting = True
                    return sent
                if applied == 0 and first == 1 and frames[0].record[:1] == _LOST_TAG:
                    raise StoreRejected(
                        f"frame 1 of {self.spool}, the start record of run {ref_key(ref)}, is damaged and "
                        "the store does not know the run: this store does not create a run without it "
                        "(it predates that); the spool is kept"
                    )
                if applied == self.synced:  # ... or a refusal of frames that continue it exactly
                    raise StoreRejected(
                        f"the server refused frames {first}-{last} of {ref_key(ref)}, which continue "
                        f"the seq {applied} it holds"
                    )
                self._offset = None  # resend from applied + 1, wherever that is in the spool
            elif response.accepted and applied == last:
                self._offset, self._offset_seq = end, last
                sent += len(frames)
                self.frames_sent += len(frames)
                self.bytes_sent += size
            else:
                self._offset = None
            try:  # persisted before ``synced`` moves: whoever sees the run synced finds the mark
                write_synced(self.spool, applied)
            except OSError as exc:  # the mark only saves resending: the server drops duplicates
                _ratelog.warning(
                    f"hwm:{self.spool}", "cannot record sync progress of %s: %s", self.spool, exc
                )
            self.synced = applied
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
                response = client.ingest(ref, [frame], self.writer_token, self.source)
            except StoreRejected as exc:
                if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                try:
                    skipped = records_pb2.Frame(seq=frame.seq, record=_SKIPPED[self.source])
                    response = client.ingest(ref, [skipped], self.writer_token, self.source)
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
            tuple(self.damage.values()),
            self.tail_bytes,
            self.tail_reason,
            self.refused,
            self.start_lost,
        )

    def _scan(self, start: int | None, after_seq: int) -> _ScanIter:
        return _ScanIter(self.spool, start, after_seq)

    def _met(self, damage: Damage) -> None:
        key = (damage.start, damage.first_seq)
        if key not in self.damage:
            self.damage[key] = damage
            if self._on_damage == "log":
                log.warning("damaged spool %s: %s", self.spool, damage.describe())
            elif callable(self._on_damage):
                self._on_damage(damage)

    def locate(self, to_end: bool = False) -> None:
        """Finds where the next push starts (just past frame ``synced``). With ``to_end``, reads on
        to the last frame, so that ``last_seq`` and ``finish_seq`` describe the whole spool."""
        offset: int | None = None
        offset_seq = 0
        with self._scan(None, 0) as items:
            for item in items:
                if isinstance(item, Damage):
                    self._met(item)
                    if item.last_seq <= self.synced:  # bytes only, or frames the server holds
                        offset, offset_seq = item.end, max(offset_seq, item.last_seq)
                    elif not to_end:
                        break
                    self.last_seq = max(self.last_seq, item.last_seq)
                    self.finish_seq = 0
                    continue
                if item.seq <= self.synced:
                    offset, offset_seq = item.end, item.seq
                elif not to_end:
                    break
                self._note(item.seq, item.payload)
            else:
                self.tail_bytes, self.tail_reason = items.scan.tail_bytes, items.scan.tail_reason
        self._offset, self._offset_seq = offset, offset_seq

    def _next_batch(self, upto: int | None = None) -> tuple[list[records_pb2.Frame], int | None, int, int]:
        """The next batch after ``synced``: frames, the offset just past them, their bytes, and the
        last seq they cover (a FramesLost covers several)."""
        batch: list[records_pb2.Frame] = []
        end, size, through = self._offset, 0, self.synced
        with self._scan(self._offset, self._offset_seq) as items:
            for item in items:
                if upto is not None and (item.seq if isinstance(item, FrameAt) else item.first_seq) > upto:
                    break
                if isinstance(item, Damage):
                    self._met(item)
                    if item.last_seq <= self.synced:
                        end = item.end  # nothing the store lacks (e.g. a damaged magic)
                        continue
                    if batch:
                        break  # a FramesLost ends a batch of its own
                    first = max(item.first_seq, self.synced + 1)
                    batch.append(records_pb2.Frame(seq=first, record=lost_record(item, first)))
                    end, through = item.end, item.last_seq
                    self.last_seq = max(self.last_seq, item.last_seq)
                    self.finish_seq = 0
                    break
                if batch and (len(batch) >= self._max_frames or size + len(item.payload) > self._max_bytes):
                    break
                end = item.end
                self._note(item.seq, item.payload)
                if item.seq <= self.synced:
                    continue
                batch.append(records_pb2.Frame(seq=item.seq, record=item.payload, rows=item.rows))
                size += len(item.payload)
                through = item.seq
            else:
                self.tail_bytes, self.tail_reason = items.scan.tail_bytes, items.scan.tail_reason
        return batch, end, size, through

    def _note(self, seq: int, payload: bytes) -> None:
        # Frames are noted in seq order, so finish_seq ends up naming a Finish only if it is the
        # last frame read (a resumed run continues after its first Finish).
        if seq > self.last_seq:
            self.last_seq = seq
            self.finish_seq = seq if is_finish(payload) else 0


def ref_from_name(spool: Path) -> records_pb2.RunRef | None:
    """The run of a spool whose RunStart is lost, as far as it is known: the id in its file name
    (``run-<id>.tlog``), and the entity and project ``init()`` would default to here
    (``TRACKLOG_ENTITY``/``TRACKLOG_PROJECT``, the user name, ``Uncategorized``). None when the name
    holds no valid id."""
    name = spool.name
    if not (name.startswith("run-") and name.endswith(".tlog")):
        return None
    entity = os.environ.get("TRACKLOG_ENTITY") or _settings.default_entity()
    project = os.environ.get("TRACKLOG_PROJECT") or _refs.DEFAULT_PROJECT
    try:
        path = _refs.RunPath(entity, project, name[len("run-") : -len(".tlog")])
    except ValueError:
        return None
    return records_pb2.RunRef(entity=path.entity, project=path.project, id=path.id)


def lost_record(damage: Damage, first_seq: int) -> bytes:
    """The FramesLost record sent at ``first_seq`` in place of the frames ``damage`` lost from it."""
    whole = first_seq == damage.first_seq  # else the store holds the first few: their rows are unknown
    lost = records_pb2.FramesLost(
        file=damage.file,
        first_seq=first_seq,
        last_seq=damage.last_seq,
        rows=damage.rows if whole else 0,
        rows_known=damage.rows_known and whole,
        bytes=damage.bytes,
        reason=damage.reason,
    )
    return records_pb2.Record(lost=lost).SerializeToString()


_LOST_TAG = bytes([(12 << 3) | 2])  # a serialized Record holding FramesLost starts with this tag


class _ScanIter:
    """``_spool.scan`` as a context manager that closes the file, with OS and format errors turned
    into SpoolUnusable."""

    def __init__(self, spool: Path, start: int | None, after_seq: int) -> None:
        self._spool = spool
        try:
            self.scan: Scan = scan(spool, start, after_seq)
        except (OSError, SpoolError) as exc:
            raise SpoolUnusable(f"cannot read {self._spool}: {exc}") from exc

    def __enter__(self) -> _ScanIter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.scan.close()

    def __iter__(self) -> _ScanIter:
        return self

    def __next__(self) -> FrameAt | Damage:
        try:
            return next(self.scan)
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
    on_damage: DamageReport = "log",
) -> SyncResult:
    """Pushes every frame of one spool that the store at ``server_target`` does not hold yet.

    Resumable and idempotent: run it again after any failure, or on a spool that is still growing.
    The run is read from the spool's RunStart unless ``ref`` is given. Retries transient failures per
    ``retry``; raises StoreUnavailable when the server stays away, StoreRejected when it refuses the
    data, SpoolUnusable when the spool cannot be read. Damage met is passed to ``on_damage`` once
    each (by default logged; None when the caller reports ``SyncResult.damage`` itself).
    """
    sync = SpoolSync(spool_path, ref, on_damage=on_damage)
    client = client_factory(server_target)
    try:
        retry.call(lambda: sync.push(client, progress), stop=stop or threading.Event())
    finally:
        client.close()
    return sync.result()
