"""The run's background thread: drains the queue ``Run.log`` fills, encodes frames, ships them.

Invariants:
- The hot path only appends to ``queue`` (a deque: atomic append/popleft without a lock) and, when
  the queue grows past a batch, sets ``wake``. Everything else happens on this thread.
- Frames get consecutive seqs in queue order; history rows between two control records form one
  HistoryBatch, so the spool preserves the order the training script produced.
- A frame stays in ``unacked`` until the transport reports it durable; after a reconnect every frame
  above the daemon's durable seq is sent again (the daemon drops what it already holds).
- This thread never raises: failures become one rate-limited warning and a reconnect with backoff.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import groupby, repeat
from typing import Any

from tracklog import _history
from tracklog._capture import Capture
from tracklog._errors import CommError
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

Row = tuple[int, float, dict[str, Any]]


class Sender:
    def __init__(
        self,
        transport: Transport,
        *,
        warn: Callable[[str], None],
        flush_interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        fallback: Callable[[list[tuple[int, bytes]]], None] | None = None,
        finish_timeout: float = 15.0,
        last_seq: int = 0,
        capture: Capture | None = None,
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
        self._seq = last_seq  # the run's last frame so far: 0, or where a resumed spool ends
        self._unacked: deque[tuple[int, bytes]] = deque()
        self._sent_through = 0
        self._connected = False
        self._next_attempt = 0.0
        self._backoff = 0.1
        self._warned_at = -1e9
        self._builder = _history.BatchBuilder()
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
        self._try_connect()
        if not self._connected:
            return False
        self._encode()
        self._ship(ack=True)
        if self._unacked:
            self.transport.wait_durable(self._unacked[-1][0], timeout)
            self._trim()
        return self._connected

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tracklog-sender", daemon=True)
        self._thread.start()

    def close(self, timeout: float) -> bool:
        """Drains everything, waits until it is durable; True if all of it is.

        If the daemon cannot be reached before the deadline, the frames it has not acknowledged are
        written straight into the run's spool (``fallback``), where the next daemon or ``tracklog
        sync`` finds them: the run's data outlives a daemon that is gone for good.
        """
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.transport.close()
        if self._thread is not None and self._thread.is_alive():
            return False  # still trying; what it holds stays in this process's memory until exit
        self._encode()
        if self._unacked and self._fallback is not None:
            try:
                count = len(self._unacked)
                self._fallback(list(self._unacked))
                self._unacked.clear()
                self._warn(
                    f"the daemon could not be reached; {count} frames were written to the run's "
                    "spool instead; the next daemon start, or `tracklog sync` on the run dir, sends them"
                )
            except Exception as exc:  # never raise into the training script at exit
                # E.g. the daemon still holds the spool (its lock refuses a second writer): these
                # frames are lost, and the user is told exactly how many.
                count, rows = len(self._unacked), sum(history_rows(p) for _, p in self._unacked)
                self._warn(
                    f"{count} frame{'s' if count != 1 else ''} ({rows} history rows) of this run could not "
                    f"be kept: the daemon did not acknowledge them and the spool refused them ({exc})"
                )
        return not self.queue and not self._unacked

    @property
    def pending_frames(self) -> int:
        return len(self._unacked)

    # -- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.wake.wait(self._flush_interval)
                self.wake.clear()
                self._cycle()
            self._finish_cycle(self._finish_timeout)
        except Exception as exc:  # the training loop must never see a sender crash
            self._warn(f"internal error in the sender thread, run data may be incomplete: {exc!r}")

    def _cycle(self) -> None:
        if self.capture is not None:
            self.queue.extend(self.capture.tick())
        self._encode()
        self._ship()

    def _finish_cycle(self, deadline_s: float) -> None:
        """After close(): ship the rest and wait for durability, reconnecting while time remains."""
        self._encode()
        deadline = self._clock() + deadline_s
        while self._unacked and self._clock() < deadline:
            self._ship(ack=True)
            if self._connected and self._unacked:
                self.transport.wait_durable(self._unacked[-1][0], min(1.0, deadline - self._clock()))
                self._trim()
            elif self._unacked:
                self._sleep_until_retry(deadline)

    def _sleep_until_retry(self, deadline: float) -> None:
        delay = max(0.0, min(self._next_attempt, deadline) - self._clock())
        if delay:
            self._sleep(min(delay, 0.5))

    def _encode(self) -> None:
        """Turns queued rows and records into frames (appended to ``unacked``)."""
        queue, builder = self.queue, self._builder
        frames: list[records_pb2.Record | bytes] = []
        # Under ``lock`` so that a summary read sees each row either still queued or applied.
        with self.lock:
            self._drain(queue, builder, frames)
        for frame in frames:
            self._seq += 1
            payload = frame if type(frame) is bytes else frame.SerializeToString()  # type: ignore[union-attr]
            self._unacked.append((self._seq, payload))

    def _drain(
        self, queue: deque[Any], builder: _history.BatchBuilder, frames: list[records_pb2.Record | bytes]
    ) -> None:
        # Only this thread pops, so the queue holds at least ``len(queue)`` items; they are taken
        # in one C loop (``map`` over ``repeat``), without a bytecode per row, and grouped by kind.
        # The builder is empty between groups: each run of rows becomes whole HistoryBatches.
        items = list(map(deque.popleft, repeat(queue, len(queue))))
        for kind, group in groupby(items, type):
            if kind is tuple:  # history rows, in step order
                rows = list(group)
                for start in range(0, len(rows), BATCH_ROWS):
                    frames.extend(self._history_frames(rows[start : start + BATCH_ROWS]))
            elif kind is records_pb2.Record or kind is bytes:
                frames.extend(group)
            elif self.capture is not None:
                for item in group:
                    frames.extend(self.capture.expand(item))

    def _history_frames(self, rows: list[Row]) -> list[bytes]:
        """``rows`` as one HistoryBatch frame, or as several when one would be over the spool's and
        the store's frame limit (long strings in many rows): halves until each fits. log() keeps
        a single row well under the limit (``_rules.MAX_ROW_BYTES``)."""
        builder = self._builder
        builder.extend(rows)
        payload = records_pb2.Record(history=builder.encode()).SerializeToString()
        if len(payload) > MAX_FRAME_BYTES and len(rows) > 1:
            builder.reset()
            half = len(rows) // 2
            return self._history_frames(rows[:half]) + self._history_frames(rows[half:])
        self._account_builder()
        return [payload]

    def _account_builder(self) -> None:
        """Adds the built batch to the local view of the run (rows, last values, sparklines)."""
        builder = self._builder
        self.rows += len(builder)
        self.last_values.update(builder.last_values())
        for key, values in builder.numeric_columns():
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = Series()
            series.extend(values)
        builder.reset()

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
        pending = [frame for frame in self._unacked if frame[0] > self._sent_through]
        ack = ack or len(self._unacked) >= MAX_UNACKED_FRAMES
        try:
            for start in range(0, len(pending), MAX_BATCH_FRAMES):
                chunk = pending[start : start + MAX_BATCH_FRAMES]
                self.transport.send(chunk, ack=ack and start + MAX_BATCH_FRAMES >= len(pending))
                self._sent_through = chunk[-1][0]
            if ack and not pending and self._unacked:
                self.transport.send((), ack=True)
        except CommError as exc:
            self._connected = False
            self._warn_limited(f"lost the connection to the tracklog daemon ({exc}); retrying")

    def _trim(self) -> None:
        durable = self.transport.durable_seq()
        unacked = self._unacked
        while unacked and unacked[0][0] <= durable:
            unacked.popleft()

    def _try_connect(self) -> None:
        try:
            durable = self.transport.connect()
        except (CommError, OSError) as exc:
            self._connected = False
            self._next_attempt = self._clock() + self._backoff
            self._backoff = min(self._backoff * 2, 5.0)
            self._warn_limited(f"cannot reach the tracklog daemon ({exc}); data is kept and resent")
            return
        self._connected = True
        self._backoff = 0.1
        self._sent_through = durable
        self._trim()

    def _warn_limited(self, message: str) -> None:
        now = self._clock()
        if now - self._warned_at >= 60.0:
            self._warned_at = now
            self._warn(message)
