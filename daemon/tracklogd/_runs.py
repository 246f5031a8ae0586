"""The runs the daemon holds: each run's spool writer, its attached stream, and its lifecycle.

A run is held from its first Attach (or from its pending entry at start) until its Finish record
is synced, no client is attached, and the daemon's own spool of the run (``_own``) has nothing more
coming and is synced too; then its writers are closed and its pending entry removed.

Locking: ``RunRegistry._lock`` guards the dict of runs; ``RunSlot.lock`` guards one run's writer and
state. Take the registry lock before a slot lock, never the other way round. Everything that
appends to a spool holds its slot lock, so a spool has one writer at a time even though streams,
the pid watcher and the fsync ticker run on different threads (and ``SpoolWriter``'s OS lock keeps
every other process out of it).

A write the disk refuses (full, EIO, read-only) never ends the client's stream: the frames are not in
the spool (the writer cuts back what it wrote of them), the ack carries the daemon's durable seq and
the error, and the client sends them again; frames arriving after refused ones are answered the same
way until the client's resend reaches the spool. The first successful write clears the error.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import grpc

from tracklog._rescue import merge_rescues
from tracklog._spool import FileOps, SpoolError, SpoolWriter, history_rows
from tracklog._torn import describe, seal_torn_end
from tracklog.v1 import daemon_pb2, records_pb2
from tracklogd._errors import SpoolUnusable, StreamRefused
from tracklogd._own import OwnSpool, own_spool_path
from tracklogd._pending import PendingDir, PendingEntry
from tracklogd._ratelimit import RateLimitedLog
from tracklogd._records import crashed_finish, is_finish, ref_key, spool_path, validate_ref
from tracklogd._sync import SpoolSync

log = logging.getLogger(__name__)


class Outbox(Protocol):
    """The daemon's side of one attached stream, as the registry needs it."""

    def send_stop(self, reason: str) -> None: ...

    def abort(self, code: grpc.StatusCode, reason: str) -> None: ...


@dataclass(eq=False)
class RunSlot:
    key: str  # entity/project/id
    ref: records_pb2.RunRef
    run_dir: Path
    spool: Path
    server: str  # "" means the daemon's local server
    sync: SpoolSync  # owned by the sync loop's worker for ``server``
    pid: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    writer: SpoolWriter | None = None
    stream: Outbox | None = None  # the attached client; None while detached
    durable_seq: int = 0  # writer.last_seq, readable without the lock
    finish_seq: int = 0  # seq of the Finish record ending the spool; 0 while it does not end with one
    watching: bool = False  # detached before finishing: the pid watcher decides its fate
    parked_until: float = 0.0  # the sync loop leaves the run alone until then (refused data)
    parked_reason: str = ""
    entry: PendingEntry | None = None  # as last written to pending/
    stopped: Outbox | None = None  # the stream a stop request was forwarded to (once per stream)
    own: OwnSpool = field(init=False)  # the daemon's own records of the run (its own lock)

    def __post_init__(self) -> None:
        self.own = OwnSpool(own_spool_path(self.run_dir, self.ref.id), self.ref)

    # Non-empty while frames above durable_seq were refused by the disk and not yet written since:
    # the reason, as acks carry it. ``write_failures`` counts the failed attempts meanwhile.
    write_error: str = ""
    write_failures: int = 0
    refused_from: int = 0  # the first seq refused: the error clears once the spool holds it durably

    @property
    def attached(self) -> bool:
        return self.stream is not None

    def unsynced(self) -> bool:
        # The daemon's frames wait for the client's RunStart: a run without one never gets them.
        return self.sync.synced < self.durable_seq or (self.durable_seq > 0 and self.own.unsynced())

    def complete(self) -> bool:
        """Nothing more will come: the spool ends with a Finish, or the client vanished before
        sending anything (such a run never existed; there is nothing to finish)."""
        return bool(self.finish_seq) or (self.durable_seq == 0 and not self.attached and not self.watching)


class Appended(NamedTuple):
    durable_seq: int  # what the client may consider durable: the ack's durable_seq
    error: str  # "" when every frame of the batch is in the spool; else the ack's error


class Attachment(NamedTuple):
    slot: RunSlot
    durable_seq: int
    # The client is a training process the run did not have before (a new run, or a resume by
    # another process), not the same process re-attaching: the daemon captures metadata for it.
    new_process: bool


class RunRegistry:
    def __init__(
        self,
        pending: PendingDir,
        *,
        pid_alive: Callable[[int], bool],
        stopping: threading.Event,
        wall_clock: Callable[[], float] = time.time,
        fsync_each_batch: bool = False,
        on_frames: Callable[[RunSlot], None] = lambda slot: None,
        on_watch: Callable[[], None] = lambda: None,
        on_gone: Callable[[RunSlot], None] = lambda slot: None,
        spool_ops: FileOps | None = None,
    ) -> None:
        self._pending = pending
        self._spool_ops = spool_ops  # the file layer of every spool writer (a seam for disk faults)
        self._pid_alive = pid_alive
        self._stopping = stopping
        self._wall_clock = wall_clock
        self._fsync_each_batch = fsync_each_batch
        self._on_frames = on_frames  # called (without locks) when a run has new frames to sync
        self._on_watch = on_watch  # called (without locks) when a run starts being watched
        # Called (without locks) when a run's training process is found gone (the run was finished
        # as crashed, or never started): the daemon stops capturing for it.
        self._on_gone = on_gone
        self._lock = threading.Lock()
        self._slots: dict[str, RunSlot] = {}
        self._ratelog = RateLimitedLog(log)

    # -- queries ---------------------------------------------------------------------------------

    def snapshot(self) -> list[RunSlot]:
        with self._lock:
            return list(self._slots.values())

    def busy(self, now: float) -> bool:
        """Whether the daemon has work: a client attached or watched, a capture under way, or frames
        left to sync (a run whose data the server refused does not count: it waits for a later
        daemon)."""
        return any(
            slot.attached
            or slot.watching
            or slot.own.producers
            or (slot.unsynced() and slot.parked_until <= now)
            for slot in self.snapshot()
        )

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> list[RunSlot]:
        """Takes over every pending run: cuts torn spool tails, finishes runs whose training process
        is gone, and watches the others (their clients reconnect and re-attach)."""
        recovered = []
        for entry in self._pending.load():
            spool = Path(entry.spool)
            if not spool.exists():
                log.warning("the spool of pending run %s is gone (%s); forgetting it", entry.ref, spool)
                self._pending.remove(entry.ref)
                continue
            try:
                slot = self._recover_one(entry, spool)
            except (OSError, SpoolError, SpoolUnusable) as exc:
                log.error("cannot recover run %s from %s: %s", entry.ref, spool, exc)
                continue
            with self._lock:
                self._slots[slot.key] = slot
            recovered.append(slot)
        return recovered

    def _recover_one(self, entry: PendingEntry, spool: Path) -> RunSlot:
        ref = entry.run_ref()
        slot = RunSlot(
            key=entry.ref,
            ref=ref,
            run_dir=Path(entry.run_dir),
            spool=spool,
            server=entry.server,
            sync=SpoolSync(spool, ref),
            pid=entry.pid,
            entry=entry,
        )
        writer = slot.writer = SpoolWriter(spool, ops=self._spool_ops)
        if writer.recovery.truncated_bytes:
            log.warning(
                "recovered %s: cut a torn tail of %d bytes after frame %d (%s)",
                spool,
                writer.recovery.truncated_bytes,
                writer.last_seq,
                writer.recovery.tail_reason,
            )
        for damage in writer.recovery.damage:  # left in place; the sync reports it to the store
            log.warning("recovered %s with damage: %s", spool, damage.describe())
        with slot.lock:
            self._take_rescues(slot)
        slot.durable_seq = writer.last_seq
        try:
            slot.own.open_existing()  # the daemon's sequence continues where it ended
        except (OSError, SpoolError) as exc:
            log.error("cannot open the daemon's spool %s of run %s: %s", slot.own.path, slot.key, exc)
        slot.sync.locate(to_end=True)  # does the spool end with a Finish? (and where sync resumes)
        with slot.lock:
            if slot.sync.finish_seq:
                slot.finish_seq = slot.sync.finish_seq
            elif self._pid_alive(slot.pid):
                slot.watching = True
            else:
                self._finish_crashed(slot)
        log.info("recovered run %s: %d frames, %d synced", slot.key, writer.last_seq, slot.sync.synced)
        return slot

    # -- streams ---------------------------------------------------------------------------------

    def attach(self, attach: daemon_pb2.Attach, stream: Outbox) -> Attachment:
        """Makes ``stream`` the run's one writer; returns the run, its durable seq and whether the
        client is a new training process for it.

        A stream already attached to the run is aborted (the newer attach wins). Raises
        StreamRefused for a bad Attach or a spool that cannot be opened.
        """
        try:
            validate_ref(attach.ref)
        except (TypeError, ValueError) as exc:
            raise StreamRefused(str(exc), grpc.StatusCode.INVALID_ARGUMENT) from exc
        if not os.path.isabs(attach.run_dir):
            raise StreamRefused(
                f"run_dir must be an absolute path, got {attach.run_dir!r}", grpc.StatusCode.INVALID_ARGUMENT
            )
        key = ref_key(attach.ref)
        run_dir = Path(attach.run_dir)
        spool = spool_path(run_dir, attach.ref.id)
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None and (slot.spool != spool or slot.server != attach.server):
                if slot.attached or slot.watching or slot.unsynced():
                    raise StreamRefused(
                        f"run {key} is open with spool {slot.spool} and server {slot.server!r} "
                        "and not yet synced; it cannot move",
                        grpc.StatusCode.FAILED_PRECONDITION,
                    )
                self._drop(slot)
                slot = None
            if slot is None:
                slot = self._slots[key] = RunSlot(
                    key=key,
                    ref=attach.ref,
                    run_dir=run_dir,
                    spool=spool,
                    server=attach.server,
                    sync=SpoolSync(spool, attach.ref),
                )
            with slot.lock:
                # One writer per run: a second live training process with the run's id (resume=
                # "allow" twice at once) would number its frames over the first one's, and one of
                # them would lose its rows. The same process re-attaching (a reconnect) wins.
                holder = slot.pid if slot.attached or slot.watching else 0
                if holder and holder != attach.pid and self._pid_alive(holder):
                    raise StreamRefused(
                        f"run {key} is being written by process {holder}, which is still running",
                        grpc.StatusCode.ALREADY_EXISTS,
                    )
                try:
                    if slot.writer is None:
                        run_dir.mkdir(parents=True, exist_ok=True)
                        slot.writer = SpoolWriter(spool, ops=self._spool_ops)
                        self._take_rescues(slot)  # a resumed run's: its new frames follow them
                        slot.durable_seq = slot.writer.last_seq
                    entry = PendingEntry(key, str(run_dir), str(spool), attach.server, attach.pid)
                    if entry != slot.entry:  # durable before the first ack (see _pending)
                        self._pending.write(entry)
                        slot.entry = entry
                except (OSError, SpoolError) as exc:
                    raise StreamRefused(f"cannot open {spool}: {exc}", grpc.StatusCode.INTERNAL) from exc
                previous, slot.stream = slot.stream, stream
                new_process = slot.pid != attach.pid  # a recovered run knows its pid from pending/
                slot.pid = attach.pid
                slot.watching = False
                durable = slot.durable_seq
        if previous is not None:
            previous.abort(grpc.StatusCode.ABORTED, f"run {key} was attached again by another stream")
        self._on_frames(slot)
        return Attachment(slot, durable, new_process)

    def append(self, slot: RunSlot, stream: Outbox, frames: Sequence[records_pb2.Frame]) -> Appended:
        """Writes the frames above the durable seq (resends are skipped); returns what to ack.

        A spool ending with a Finish is fsynced before its Finish is acked. A write or fsync the disk
        refuses is not an error of the stream: it is answered with the durable seq and the reason (see
        the module doc). Raises StreamRefused on a gap the daemon did not cause, or when ``stream`` was
        replaced by a newer attach.
        """
        items = [(frame.seq, frame.record, frame.rows or history_rows(frame.record)) for frame in frames]
        with slot.lock:
            writer = slot.writer
            if slot.stream is not stream or writer is None:
                raise StreamRefused(f"run {slot.key} was attached again", grpc.StatusCode.ABORTED)
            held = writer.last_seq
            finish = max((seq for seq, payload, _ in items if seq > held and is_finish(payload)), default=0)
            try:
                last = writer.append(items)
            except SpoolError as exc:
                if slot.write_error:  # frames sent after ones the disk refused: they come again
                    return Appended(held, slot.write_error)
                raise StreamRefused(str(exc), grpc.StatusCode.FAILED_PRECONDITION) from exc
            except OSError as exc:
                error = self._write_failed(slot, f"cannot write {slot.spool}", exc, held + 1)
                return Appended(writer.synced_seq if self._fsync_each_batch else held, error)
            if last > held:
                # finish_seq names a Finish only while it is the last frame: frames after one mean
                # the run was resumed, and its client may still vanish.
                slot.finish_seq = finish if finish == last else 0
                slot.durable_seq = last
            acked, error = last, ""
            if writer.dirty and (slot.finish_seq or self._fsync_each_batch):
                try:
                    writer.sync()  # a Finish is acked only once it survives a machine crash
                except OSError as exc:
                    acked = writer.synced_seq if self._fsync_each_batch else last - 1
                    error = self._write_failed(slot, f"cannot fsync {slot.spool}", exc, acked + 1)
            if not error and slot.write_error:
                if last < slot.refused_from:  # e.g. an empty batch asking for the ack: still refused
                    error = slot.write_error
                else:
                    log.warning(
                        "writing %s again after %d failed attempts (%s)",
                        slot.spool,
                        slot.write_failures,
                        slot.write_error,
                    )
                    self._ratelog.forget(f"write:{slot.key}")
                    slot.write_error, slot.write_failures = "", 0
        if last > held:
            self._on_frames(slot)
        return Appended(acked, error)

    def _write_failed(self, slot: RunSlot, what: str, exc: OSError, refused_from: int) -> str:
        # Slot lock held. One log line per run per interval however often the client retries.
        error = f"{what}: {exc.strerror or exc}"
        slot.write_error = error
        slot.write_failures += 1
        slot.refused_from = refused_from
        self._ratelog.log(
            logging.ERROR,
            f"write:{slot.key}",
            "%s; frames of run %s above %d are not acked until it can (its client keeps them)",
            error,
            slot.key,
            slot.durable_seq,
        )
        return error

    def detach(self, slot: RunSlot, stream: Outbox) -> None:
        """The stream ended. A run left without a Finish is finished as crashed at once if its
        training process is gone, else watched (``check_watched``) until it re-attaches or dies."""
        crashed = gone = False
        with slot.lock:
            if slot.stream is not stream:
                return  # replaced by a newer attach, which now owns the run
            slot.stream = None
            rescued = self._take_rescues(slot)
            if self._stopping.is_set() or slot.finish_seq:
                pass  # the daemon is going away (clients re-attach to the next), or run complete
            elif self._pid_alive(slot.pid):
                slot.watching = True
            else:
                gone = True
                crashed = self._finish_crashed(slot)
        if slot.watching:
            self._on_watch()
        if crashed or rescued:
            self._on_frames(slot)
        if gone:
            self._on_gone(slot)
        self.retire_if_done(slot)

    def append_own(self, slot: RunSlot, payloads: Sequence[bytes]) -> bool:
        """Appends records the daemon made for the run (system metrics, metadata, captured files)
        to its own spool of the run, whatever the state of the training process; whether they were
        written (not when the run was retired or the daemon stops, or the disk failed: logged)."""
        try:
            written = slot.own.append(payloads) > 0
        except (OSError, SpoolError) as exc:
            self._ratelog.warning(f"own:{slot.key}", "cannot write %s: %s", slot.own.path, exc)
            return False
        if written:
            self._on_frames(slot)
        return written

    def own_ended(self, slot: RunSlot, producer: str) -> None:
        """``producer`` appends nothing more to the run's own spool; the run may be retired."""
        slot.own.end(producer)
        self._on_frames(slot)  # the sync loop pushes what is left, then retires the run
        self.retire_if_done(slot)

    def request_stop(self, key: str, reason: str) -> bool:
        """Forwards a stop to the run's attached client, once per stream; whether it did."""
        with self._lock:
            slot = self._slots.get(key)
        if slot is None:
            return False
        with slot.lock:
            stream = slot.stream
            if stream is None or slot.stopped is stream:
                return False
            slot.stopped = stream
        stream.send_stop(reason)
        return True

    # -- periodic work ---------------------------------------------------------------------------

    def check_watched(self) -> None:
        """Finishes as crashed every detached run whose training process is gone."""
        for slot in self.snapshot():
            if not slot.watching:
                continue
            with slot.lock:
                gone = slot.watching and slot.stream is None and not self._pid_alive(slot.pid)
                crashed = gone and self._finish_crashed(slot)
            if crashed:
                self._on_frames(slot)
            if gone:
                self._on_gone(slot)
            if not crashed and not slot.watching:
                self.retire_if_done(slot)

    def watching_any(self) -> bool:
        return any(slot.watching for slot in self.snapshot())

    def fsync_all(self) -> None:
        """Makes every acked frame durable (group commit: one fsync per spool per interval)."""
        for slot in self.snapshot():
            with slot.lock:
                if slot.writer is not None:
                    try:
                        slot.writer.sync()
                    except OSError as exc:  # stays dirty: the next tick tries again
                        self._ratelog.log(
                            logging.ERROR, f"fsync:{slot.key}", "cannot fsync %s: %s", slot.spool, exc
                        )
            try:
                slot.own.fsync()
            except OSError as exc:
                self._ratelog.log(
                    logging.ERROR, f"fsync-own:{slot.key}", "cannot fsync %s: %s", slot.own.path, exc
                )

    def retire_if_done(self, slot: RunSlot) -> bool:
        """Lets go of a run whose Finish and everything before it are synced, with no client."""
        with self._lock, slot.lock:
            if slot.attached or slot.watching or not slot.complete() or slot.unsynced():
                return False
            if slot.own.producers:  # the daemon still samples the run, or captures its metadata
                return False
            if self._slots.get(slot.key) is not slot:
                return False
            self._drop(slot)
        log.info("run %s is synced and finished", slot.key)
        return True

    def abort_streams(self, code: grpc.StatusCode, reason: str) -> None:
        """Ends every attached stream (at shutdown: their clients re-attach to the next daemon)."""
        for slot in self.snapshot():
            with slot.lock:
                stream = slot.stream
            if stream is not None:
                stream.abort(code, reason)

    def close(self) -> None:
        """Closes every spool (fsyncing it). Pending entries stay for the next daemon."""
        for slot in self.snapshot():
            with slot.lock:
                if slot.writer is not None:
                    try:
                        slot.writer.close()
                    except OSError as exc:
                        log.error("cannot close %s: %s", slot.spool, exc)
                    slot.writer = None
            self._close_own(slot)

    # -- internals (lock held) ------------------------------------------------------------------------

    def _drop(self, slot: RunSlot) -> None:
        # Registry lock held; the slot is finished and synced (or being replaced after that).
        del self._slots[slot.key]
        if slot.writer is not None:
            try:
                slot.writer.close()
            except OSError as exc:  # closed all the same; its frames are synced to the store
                log.error("cannot close %s: %s", slot.spool, exc)
            slot.writer = None
        self._close_own(slot)
        self._pending.remove(slot.key)

    @staticmethod
    def _close_own(slot: RunSlot) -> None:
        try:
            slot.own.close()
        except OSError as exc:
            log.error("cannot close %s: %s", slot.own.path, exc)

    def _take_rescues(self, slot: RunSlot) -> bool:
        """Slot lock held. Adds to the spool the frames its training process rescued beside it (at
        finish(), when this daemon did not ack in time: ``tracklog._rescue``); whether any came."""
        writer = slot.writer
        if writer is None:
            return False
        merged = merge_rescues(writer, lambda problem: log.error("run %s: %s", slot.key, problem))
        if not merged.frames:
            return False
        log.warning(
            "run %s: added %d frames its training process had rescued (this daemon did not ack them "
            "in time) to %s",
            slot.key,
            merged.frames,
            slot.spool,
        )
        slot.durable_seq = writer.last_seq
        slot.finish_seq = writer.last_seq if is_finish(merged.last_payload) else 0
        return True

    def _finish_crashed(self, slot: RunSlot) -> bool:
        # Slot lock held. The client is gone, so the daemon writes the run's last frame itself.
        slot.watching = False
        writer = slot.writer
        if writer is None or slot.finish_seq:
            return False
        if self._take_rescues(slot) and slot.finish_seq:
            log.info("run %s: its rescued frames end with the Finish of process %d", slot.key, slot.pid)
            return True
        if writer.last_seq == 0:
            log.info("run %s: training process %d vanished before its run started", slot.key, slot.pid)
            return False  # no RunStart: the store never heard of the run; retire_if_done drops it
        try:
            # A torn end cut at recovery that its training process did not send again: lost.
            lost = seal_torn_end(writer)
        except OSError as exc:
            self._ratelog.log(
                logging.ERROR, f"crash:{slot.key}", "cannot record the torn end of %s: %s", slot.spool, exc
            )
            slot.watching = True  # tried again on the pid watcher's next tick
            return False
        if lost is not None:
            log.warning("damaged spool %s: %s (recorded on the run)", slot.spool, describe(lost))
            slot.durable_seq = writer.last_seq
        seq = writer.last_seq + 1
        try:
            writer.append([(seq, crashed_finish(slot.pid, self._wall_clock()))])
        except (OSError, SpoolError) as exc:
            # Still watched: the pid watcher tries again on its next tick, once the disk takes it.
            slot.watching = True
            self._ratelog.log(
                logging.ERROR, f"crash:{slot.key}", "cannot finish run %s as crashed: %s", slot.key, exc
            )
            return False
        slot.finish_seq = slot.durable_seq = seq
        try:
            writer.sync()
        except OSError as exc:  # the Finish is in the spool; the fsync ticker tries again
            self._ratelog.log(logging.ERROR, f"fsync:{slot.key}", "cannot fsync %s: %s", slot.spool, exc)
        log.info("run %s: training process %d vanished; finished it as crashed", slot.key, slot.pid)
        return True
