"""The run's background thread: drains the queue ``Run.log`` fills, encodes frames, ships them.

Invariants:
- The hot path only appends to ``queue`` (a deque: atomic append/popleft without a lock) and, when
  the queue grows past a batch, sets ``wake``. Everything else happens on this thread.
- Frames get consecutive seqs in queue order; history rows between two control records form one
  HistoryBatch, so the spool preserves the order the training script produced.
- A frame stays in ``unacked`` until the transport reports it durable; after a reconnect, or after
  the daemon answered that it could not write them (``Ack.error``), every frame above the daemon's
  durable seq is sent again (the daemon drops what it already holds).
- Nothing is framed after a Finish: whatever reaches the queue behind it (a timing tick, a daemon
  record) is discarded, so a run that finished is never reopened by a late record.
- What it holds for the daemon (unacked frames plus the messages gRPC has not taken yet) stays
  under ``max_buffer_bytes``: past it, new history rows, console lines and daemon records are
  dropped and counted (``Losses``), never control records (start, config, summary, finish).
- This thread never raises and never stops early: an item that cannot be encoded costs that item
  (a history batch is retried row by row), anything else unexpected costs at most one cycle's
  shipping, and becomes one rate-limited warning.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby, repeat
from typing import Any

from tracklog._capture import Capture, OutputChunk
from tracklog._errors import CommError, RunBusy
from tracklog._files import FileSend
from tracklog._history import BatchBuilder
from tracklog._losses import Losses
from tracklog._sparkline import Series
from tracklog._spool import MAX_FRAME_BYTES, history_rows
from tracklog._transport import Transport
from tracklog.v1 import records_pb2

FLUSH_INTERVAL = 0.1  # seconds: the longest a row waits in the training process
BATCH_ROWS = 4096  # rows per HistoryBatch; the hot path wakes the thread at this queue length
MAX_BATCH_FRAMES = 64  # frames per message to the daemon
# Batches go out without asking for their ack (FrameBatch.ack), so the daemon acks about once a
# second instead of once per 100 ms cycle; past this many unacked frames the sender asks, so that
# what it holds in memory stays small.
MAX_UNACKED_FRAMES = 64
# The memory cap (TRACKLOG_MAX_BUFFER_MB overrides it): bytes of frames held for the daemon.
MAX_BUFFER_BYTES = 256 * 2**20
# After the daemon answered that it cannot write (disk full), the first resend waits this long; the
# wait doubles up to WRITE_RETRY_MAX while it keeps failing.
WRITE_RETRY = 0.5
WRITE_RETRY_MAX = 5.0

Row = tuple[int, float, dict[str, Any]]


def _is_finish(record: records_pb2.Record) -> bool:
    return record.WhichOneof("kind") == "finish"


class Sender:
    def __init__(
        self,
        transport: Transport,
        *,
        warn: Callable[[str], None],
        flush_interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        fallback: Callable[[list[tuple[int, bytes]]], str | None] | None = None,
        finish_timeout: float = 15.0,
        last_seq: int = 0,
        capture: Capture | None = None,
        max_buffer_bytes: int = MAX_BUFFER_BYTES,
    ) -> None:
        self.transport = transport
        # Rows (tuples), Records, and Capture items. Nothing of the daemon's: it writes what it
        # makes for the run (system metrics, metadata) to a spool of its own.
        self.queue: deque[Any] = deque()
        self.capture = capture
        self.wake = threading.Event()
        self._warn = warn
        self._flush_interval = flush_interval
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep  # backoff between reconnects while finishing
        self._fallback = fallback
        self._finish_timeout = finish_timeout
        self._finish_budget = finish_timeout  # set by close()
        self._seq = last_seq  # the run's last frame so far: 0, or where a resumed spool ends
        self._unacked: deque[tuple[int, bytes]] = deque()
        self._unacked_bytes = 0
        self._max_buffer = max_buffer_bytes
        self._sent_through = 0
        self._asked_through = 0
        self._connected = False
        self._next_attempt = 0.0
        self._backoff = 0.1
        self._warned_at = -1e9
        self._builder = BatchBuilder()
        # Files to send, oldest first, each with its chunk reader once opened; under the memory cap
        # they are read as acks make room (``_pull_files``), and a Finish waits for them.
        self._files: deque[tuple[FileSend, Iterator[records_pb2.Record] | None]] = deque()
        self._held_finish: records_pb2.Record | None = None
        self._closing: list[Any] = []  # END and the Finish, queued by this thread after its last cycle
        self._ended = False  # a Finish was framed: nothing follows it
        self.losses = Losses(warn)
        self._dropping = False  # over the memory cap: dropping until something fits again
        self._write_error = ""  # the daemon's last Ack.error while it cannot write
        self._write_error_durable = 0
        self._write_retry_at = 0.0
        self._write_backoff = WRITE_RETRY
        self._internal_errors = 0
        # Local view of the run for summary reads and the closing lines, guarded by ``lock``.
        self.lock = threading.Lock()
        self.last_values: dict[str, Any] = {}
        self.series: dict[str, Series] = {}
        self.rows = 0
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------------

    def connect_now(self, timeout: float) -> bool:
        """First connection, on the caller's thread, before the thread starts: connects, ships what
        is queued (the RunStart) and waits until it is durable, so that a run exists in its spool
        once init() returns, whatever happens to the training process next."""
        try:
            self._try_connect(busy_raises=True)
            if not self._connected:
                return False
            self._encode()
            self._ship(ack=True)
            if self._unacked:
                self.transport.wait_durable(self._unacked[-1][0], timeout)
                self._trim()
            return self._connected
        except RunBusy:
            raise  # another live process writes this run: init() says so
        except Exception as exc:  # init() goes on; the thread keeps trying
            self._internal_error(exc)
            return False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tracklog-sender", daemon=True)
        self._thread.start()

    def close(self, timeout: float, closing: Iterable[Any] = (), *, prompt: bool = False) -> bool:
        """Queues ``closing`` (the run's END and Finish) behind everything, drains it all and waits
        until it is durable; True if all of it is. Never raises. ``prompt``: called while the
        process is being terminated.

        The thread queues ``closing`` itself, after its last cycle, so that no periodic record (the
        timing tick) can land behind the Finish. If the daemon cannot be reached before the
        deadline, the frames it has not acknowledged are written straight into the run's spool
        (``fallback``), where the next daemon or ``tracklog sync`` finds them: the run's data
        outlives a daemon that is gone for good.
        """
        thread = self._thread
        self._closing = list(closing)
        # The thread gives up on the daemon a second before ``timeout``, so that what it could not
        # hand over still goes to the spool below before the caller goes on (or the process dies).
        self._finish_budget = min(self._finish_timeout, max(0.0, timeout - 1.0))
        self._stop.set()
        if not prompt:  # ``prompt`` (a signal): log() may hold wake's lock below the handler
            self.wake.set()  # else the thread sees _stop within its flush interval
        if thread is None:  # never started: the caller's thread does the last cycle
            try:
                self._finish_cycle(self._finish_budget)
            except Exception as exc:
                self._internal_error(exc)
        else:
            thread.join(timeout)
        self.transport.close()
        if thread is not None and thread.is_alive():
            return False  # still trying; what it holds stays in this process's memory until exit
        try:
            self._encode()  # whatever came after the thread's last cycle (discarded after a Finish)
            self._abandon_files()
            self._spool_rest()
        except Exception as exc:  # never raise into the training script at exit
            self._internal_error(exc)
        line = self.losses.closing_line()
        if line is not None:
            self._warn(line)
        return not self.queue and not self._unacked and not self._files

    def _spool_rest(self) -> None:
        """Hands the frames the daemon did not acknowledge to ``fallback``, which writes them where
        the next owner of the spool finds them (the spool itself, or a rescue file beside it when a
        stalled daemon still holds the spool) and says where, or raises: then they are lost, and the
        user is told exactly how many."""
        if not self._unacked or self._fallback is None:
            return
        count, rows = len(self._unacked), sum(history_rows(p) for _, p in self._unacked)
        what = f"{count} frame{'s' if count != 1 else ''} ({rows} history rows)"
        try:
            where = self._fallback(list(self._unacked))
        except Exception as exc:
            self._warn(
                f"{what} of this run could not be kept: the daemon did not acknowledge them and the "
                f"spool refused them ({exc})"
            )
            return
        self._unacked.clear()
        self._unacked_bytes = 0
        self._warn(
            f"the tracklog daemon did not acknowledge {what} in time; "
            + (
                where
                or "they were written to the run's spool instead; the next daemon start, or "
                "`tracklog sync` on the run dir, sends them"
            )
        )

    @property
    def pending_frames(self) -> int:
        return len(self._unacked)

    @property
    def buffered_bytes(self) -> int:
        """What the memory cap counts: unacked frames plus messages gRPC has not taken yet."""
        return self._unacked_bytes + self.transport.queued_bytes()

    # -- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.wait(self._flush_interval)
            self.wake.clear()
            try:
                self._cycle()
            except Exception as exc:  # the training loop must never see a sender crash
                self._internal_error(exc)
        try:
            self._finish_cycle(self._finish_budget)
        except Exception as exc:
            self._internal_error(exc)

    def _internal_error(self, exc: Exception) -> None:
        self._internal_errors += 1
        self._warn_limited(f"internal error in the sender thread ({exc!r}); logging goes on")

    def _cycle(self) -> None:
        if self.capture is not None:
            self.queue.extend(self.capture.tick())
        self._encode()
        self._ship()

    def _finish_cycle(self, deadline_s: float) -> None:
        """After close(): ship the rest and wait for durability, reconnecting while time remains."""
        self.queue.extend(self._closing)
        self._encode()
        deadline = self._clock() + deadline_s
        while (self._unacked or self._files) and self._clock() < deadline:
            self._trim()
            self._pull_files()
            self._ship(ack=True)
            if self._connected and self._unacked:
                self.transport.wait_durable(self._unacked[-1][0], min(1.0, deadline - self._clock()))
                self._trim()
            elif self._unacked:
                self._sleep_until_retry(deadline)
        if self._write_error and not self._unacked:
            # The daemon wrote again only in this last wait, after the last _ship(): the user was
            # told it could not write, and is told it did (what _ship's next call would have said).
            self._write_failure()

    def _sleep_until_retry(self, deadline: float) -> None:
        delay = max(0.0, min(self._next_attempt, deadline) - self._clock())
        if delay:
            self._sleep(min(delay, 0.5))

    # -- encoding -----------------------------------------------------------------------------------

    def _encode(self) -> None:
        """Turns queued rows and records into frames (appended to ``unacked``)."""
        queue = self.queue
        # Under ``lock`` so that a summary read sees each row either still queued or applied.
        with self.lock:
            # Only this thread pops, so the queue holds at least ``len(queue)`` items; they are taken
            # in one C loop (``map`` over ``repeat``), without a bytecode per row, and grouped by
            # kind. The builder is empty between groups: each run of rows becomes whole batches.
            items = list(map(deque.popleft, repeat(queue, len(queue))))
            for kind, group in groupby(items, type):
                if kind is tuple:  # history rows, in step order
                    rows = list(group)
                    for start in range(0, len(rows), BATCH_ROWS):
                        self._history(rows[start : start + BATCH_ROWS])
                elif kind is records_pb2.Record:
                    for record in group:
                        self._record(record)
                elif kind is FileSend:
                    self._files.extend((send, None) for send in group)
                elif self.capture is not None:
                    for item in group:
                        console = isinstance(item, OutputChunk)
                        for record in self.capture.expand(item):
                            if isinstance(record, FileSend):
                                self._files.append((record, None))
                            else:
                                self._record(record, droppable=console)
        self._pull_files()  # outside the lock: it reads files from disk

    def _pull_files(self) -> None:
        """Frames the chunks of files to send, read from disk one at a time while what this process
        holds for the daemon is under half the memory cap; the rest stays on disk until acks make
        room. A Finish waits behind them (``_held_finish``)."""
        files = self._files
        while files:
            # Files take at most half of the cap, so that history rows logged meanwhile still fit.
            if self.buffered_bytes >= self._max_buffer // 2:
                return  # read on once the daemon acks what is held
            send, reading = files[0]
            if reading is None:
                reading = send.chunks()
                files[0] = (send, reading)
            try:
                record = next(reading, None)
            except (OSError, ValueError) as exc:
                self._warn(f"cannot save {send.path} with the run: {exc}")
                record = None
            if record is None:
                files.popleft()
                continue
            self._frame(record.SerializeToString())
        held, self._held_finish = self._held_finish, None
        if held is not None:
            self._record(held)

    def _abandon_files(self) -> None:
        """At the end, when the daemon did not take the run's data in time: the files not yet read
        are not sent, each named, counted as lost records (they are still on disk), and the Finish
        goes in."""
        while self._files:
            send, reading = self._files.popleft()
            sent = "the rest of it was" if reading is not None else "it was"
            self.losses.drop(
                records=1,
                reason=f"file {send.name} was not sent: the daemon did not take the run's data in time",
                kind=f"file:{send.path}",
                warning=f"{send.path} (saved with the run as {send.name}) was not sent: the daemon did "
                f"not take the run's data in time and this process holds at most "
                f"{self._max_buffer / 2**20:g} MiB for it; {sent} not read (the file is still on disk)",
            )
        held, self._held_finish = self._held_finish, None
        if held is not None:
            self._record(held)

    def _history(self, rows: list[Row]) -> None:
        if self._ended:
            return
        if self.buffered_bytes >= self._max_buffer:  # full already: no need to encode them
            self._over_cap(rows=len(rows))
            return
        builder = self._builder
        try:
            builder.extend(rows)
            payload = records_pb2.Record(history=builder.encode()).SerializeToString()
        except Exception as exc:
            builder.reset()
            self._history_row_by_row(rows, exc)
            return
        if len(payload) > MAX_FRAME_BYTES and len(rows) > 1:
            # Over the spool's and the store's frame limit (long strings in many rows): halves until
            # each fits. log() keeps a single row well under it (``_rules.MAX_ROW_BYTES``).
            builder.reset()
            half = len(rows) // 2
            self._history(rows[:half])
            self._history(rows[half:])
            return
        if self._frame(payload, rows=len(rows)):
            self._account(builder)
        builder.reset()

    def _history_row_by_row(self, rows: list[Row], exc: Exception) -> None:
        """A batch failed to encode: find the rows that cannot be encoded, drop only those."""
        good: list[Row] = []
        for row in rows:
            try:
                single = BatchBuilder()
                single.add(*row)
                records_pb2.Record(history=single.encode()).SerializeToString()
            except Exception as row_exc:
                self.losses.drop(
                    rows=1,
                    reason=f"a row at step {row[0]!r} could not be encoded: {row_exc!r}",
                    kind="encode",
                    warning=f"a logged row (step {row[0]!r}) could not be encoded ({row_exc!r}); it is "
                    "dropped and counted, and logging goes on",
                )
            else:
                good.append(row)
        if len(good) == len(rows):  # no single row is at fault: the batch as a whole is
            self.losses.drop(
                rows=len(rows),
                reason=f"a batch of {len(rows)} rows could not be encoded: {exc!r}",
                kind="encode",
                warning=f"a batch of {len(rows)} rows could not be encoded ({exc!r}); it is dropped "
                "and counted, and logging goes on",
            )
            good = []
        if good:
            self._history(good)
        self._report_losses()

    def _account(self, builder: BatchBuilder) -> None:
        """The local view of the rows just framed: summary values and the closing sparklines."""
        try:
            self.rows += len(builder)
            self.last_values.update(builder.last_values())
            for key, values in builder.numeric_columns():
                series = self.series.get(key)
                if series is None:
                    series = self.series[key] = Series()
                series.extend(values)
        except Exception as exc:  # only the terminal's summary is affected; the rows are framed
            self._internal_error(exc)

    def _record(self, record: records_pb2.Record, *, droppable: bool = False) -> None:
        if self._ended:
            return
        if self._files and _is_finish(record):
            self._held_finish = record  # after the files still to read (``_pull_files``)
            return
        try:
            if _is_finish(record):
                self._report_losses()  # what was lost goes in before the run ends
            payload = record.SerializeToString()
        except Exception as exc:
            kind = record.WhichOneof("kind") or "empty"
            self.losses.drop(
                records=1,
                reason=f"a {kind} record could not be encoded: {exc!r}",
                kind=f"encode-{kind}",
                warning=f"a {kind} record could not be encoded ({exc!r}); it is dropped and counted",
            )
            self._report_losses()
            return
        if droppable:
            self._frame(payload, records=1)
        else:
            self._frame(payload)
        if _is_finish(record):
            self._ended = True

    def _frame(self, payload: bytes, *, rows: int = 0, records: int = 0) -> bool:
        """Appends one frame; ``rows``/``records`` mark it droppable under the memory cap. Returns
        whether it was kept."""
        if self._ended:
            return False
        if rows or records:
            if self.buffered_bytes + len(payload) > self._max_buffer:
                self._over_cap(rows=rows, records=records)
                return False
            if self._dropping:  # it fits again: the loss goes into the stream where it happened
                self._dropping = False
                self._report_losses()
        self._seq += 1
        self._unacked.append((self._seq, payload))
        self._unacked_bytes += len(payload)
        return True

    def _over_cap(self, *, rows: int = 0, records: int = 0) -> None:
        self._dropping = True
        mib = self._max_buffer / 2**20
        self.losses.drop(
            rows=rows,
            records=records,
            reason=f"the training process held {mib:g} MiB for a daemon that did not take it",
            kind="memory-cap",
            warning=f"the tracklog daemon is not taking this run's data and the {mib:g} MiB this "
            "process may hold for it are full (TRACKLOG_MAX_BUFFER_MB); new rows are dropped and "
            "counted until it catches up",
        )

    def _report_losses(self) -> None:
        report = self.losses.report()
        if report is not None:
            self._frame(report.SerializeToString())

    # -- shipping -----------------------------------------------------------------------------------

    def _ship(self, *, ack: bool = False) -> None:
        """Sends the frames not sent yet on this connection. ``ack``: ask for the ack at once (the
        caller waits for durability), with an empty batch when everything was sent already."""
        if not self._connected or self.transport.broken:
            self._connected = False
            if self._clock() < self._next_attempt:
                return
            self._try_connect()
            if not self._connected:
                return
        self._trim()
        retry = self._write_failure()
        if retry is None:
            return  # the daemon cannot write: wait for the next retry
        pending = [frame for frame in self._unacked if frame[0] > self._sent_through]
        must = ack or retry  # someone waits for this ack: ask even if asked before
        # Holding many frames, or half the memory cap: ask, so that what it holds shrinks.
        ack = must or len(self._unacked) >= MAX_UNACKED_FRAMES or self.buffered_bytes * 2 >= self._max_buffer
        try:
            for start in range(0, len(pending), MAX_BATCH_FRAMES):
                chunk = pending[start : start + MAX_BATCH_FRAMES]
                asks = ack and start + MAX_BATCH_FRAMES >= len(pending)
                self.transport.send(chunk, ack=asks)
                self._sent_through = chunk[-1][0]
                if asks:
                    self._asked_through = self._sent_through
            if ack and not pending and self._unacked and (must or self._asked_through < self._unacked[-1][0]):
                self.transport.send((), ack=True)
                self._asked_through = self._unacked[-1][0]
        except CommError as exc:
            self._connected = False
            self._warn_limited(f"lost the connection to the tracklog daemon ({exc}); retrying")

    def _write_failure(self) -> bool | None:
        """Follows the daemon's ``Ack.error``. None: it cannot write and the next resend is not due;
        True: resend everything above its durable seq now (it kept none of it); False: all well."""
        error = self.transport.write_error()
        if not error and not self._write_error:
            return False
        durable = self.transport.durable_seq()
        now = self._clock()
        # Working again once an ack without error moved past the point of failure (an empty error
        # alone may only mean a new stream that has not tried to write yet).
        if self._write_error and not error and (durable > self._write_error_durable or not self._unacked):
            self._warn("the tracklog daemon writes this run's data again; what it kept waiting was sent")
            self._write_error = ""
            self._write_backoff = WRITE_RETRY
            return False
        if not self._write_error:
            self._write_error = error
            self._write_error_durable = durable
            self._write_retry_at = now + self._write_backoff
            self._warn(
                f"the tracklog daemon cannot write this run's data ({error}); this process keeps it "
                "in memory and sends it again until it can"
            )
        if now < self._write_retry_at:
            return None
        self._write_backoff = min(self._write_backoff * 2, WRITE_RETRY_MAX)
        self._write_retry_at = now + self._write_backoff
        self._sent_through = min(self._sent_through, durable)
        return True

    def _trim(self) -> None:
        durable = self.transport.durable_seq()
        unacked = self._unacked
        while unacked and unacked[0][0] <= durable:
            self._unacked_bytes -= len(unacked.popleft()[1])

    def _try_connect(self, *, busy_raises: bool = False) -> None:
        """Connects; ``busy_raises``: a RunBusy (another live process writes the run) propagates,
        else it is one more failure to retry, as any other."""
        try:
            durable = self.transport.connect()
        except (CommError, OSError, RunBusy) as exc:
            if busy_raises and isinstance(exc, RunBusy):
                raise
            self._connected = False
            self._next_attempt = self._clock() + self._backoff
            self._backoff = min(self._backoff * 2, 5.0)
            self._warn_limited(f"cannot reach the tracklog daemon ({exc}); data is kept and resent")
            return
        self._connected = True
        self._backoff = 0.1
        self._sent_through = durable
        self._asked_through = 0  # the highest seq an ack was asked for on this stream
        self._trim()

    def _warn_limited(self, message: str) -> None:
        now = self._clock()
        if now - self._warned_at >= 60.0:
            self._warned_at = now
            self._warn(message)
