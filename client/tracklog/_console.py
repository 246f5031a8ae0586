"""Console capture: what the training script writes to stdout and stderr reaches the terminal
unchanged and is also recorded as the run's log.

How: fds 1 and 2 are redirected (dup2) into two pipes; the bytes read from a pipe are written at once
to the original fd (the terminal sees exactly what it would) and split into lines for the run. This
catches print(), logging, tqdm and C extensions writing to fd 1 alike.

Ordering: each pipe is in write order by itself. Across the two, ``sys.stdout`` and ``sys.stderr`` are
wrapped so that every Python-level write drains both pipes right after it, in the writing thread: a
Python write is recorded before anything written after it. Output from C code is drained by the
reader thread within milliseconds.

Inside a Jupyter kernel ``sys.stdout``/``sys.stderr`` are ipykernel's ``OutStream``s: print() in a
cell goes over ZMQ to the notebook and never reaches fd 1. So for a stream that is an ``OutStream``,
the wrapper also records the text of each Python-level write itself (fd capture still records C
output, which ipykernel forwards from fd 1 to the notebook by writing to the inner ``OutStream``
directly, never through the wrapper, so nothing is recorded twice). The notebook shows what it
showed before.

Invariants: the pipes are always drained (the reader thread never blocks on anything but them), so
the script never blocks on a full pipe; a failure inside capture turns capture off and restores the
fds, it never breaks the script's output.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from tracklog.v1 import records_pb2

STDOUT = records_pb2.OUTPUT_STREAM_STDOUT
STDERR = records_pb2.OUTPUT_STREAM_STDERR
MAX_LINE = 64 * 1024  # longer lines are cut (the terminal still gets every byte)

Line = tuple[float, int, str]
_RETIRED: list[object] = []  # stream wrappers swapped out of sys.stdout/sys.stderr (see Console.stop)


class _LineSplitter:
    """Bytes in, complete lines out; a carriage return starts the line over (progress bars keep
    only their last state)."""

    def __init__(self, stream: int) -> None:
        self.stream = stream
        self._pending = b""

    def feed(self, data: bytes, now: float, out: list[Line]) -> None:
        data = self._pending + data
        *complete, self._pending = data.split(b"\n")
        for raw in complete:
            out.append((now, self.stream, _text(raw)))
        if len(self._pending) > MAX_LINE:
            out.append((now, self.stream, _text(self._pending)))
            self._pending = b""

    def flush(self, now: float, out: list[Line]) -> None:
        if self._pending:
            out.append((now, self.stream, _text(self._pending)))
            self._pending = b""


def _text(raw: bytes) -> str:
    raw = raw.rstrip(b"\r")
    if b"\r" in raw:
        raw = raw.rsplit(b"\r", 1)[1]
    return raw[:MAX_LINE].decode("utf-8", errors="replace")


def in_kernel_stream(stream: object) -> bool:
    """True for ipykernel's ``OutStream``, whose writes never reach a file descriptor. Costs no
    import: ipykernel is in ``sys.modules`` already whenever such a stream exists."""
    return "ipykernel" in sys.modules and type(stream).__module__.startswith("ipykernel.")


class _Wrapped:
    """``sys.stdout``/``sys.stderr`` as before, plus a drain of the capture pipes after each write;
    with ``record``, each written text is also handed to it (a kernel stream, see the module doc)."""

    def __init__(
        self,
        inner: TextIO,
        drain: Callable[[], None],
        tty_fd: int,
        record: Callable[[str], None] | None = None,
    ) -> None:
        self._inner = inner
        self._drain = drain
        self._tty_fd = tty_fd
        self._record = record

    def write(self, text: str) -> int:
        written = self._inner.write(text)
        if self._record is not None:
            # No flush here: the kernel's stream sends on its own schedule, and a flush from a cell
            # waits for the kernel's IO thread on every printed line.
            self._record(text)
        elif "\n" in text or "\r" in text or getattr(self._inner, "line_buffering", False):
            self._inner.flush()
        self._drain()
        return written

    def flush(self) -> None:
        self._inner.flush()
        self._drain()

    def isatty(self) -> bool:
        # Libraries (tqdm, colour logging) ask this: answer for the terminal behind the capture.
        try:
            return os.isatty(self._tty_fd)
        except OSError:
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Console:
    """Captures fds 1 and 2 while started; ``sink`` receives lists of (time, stream, text) lines."""

    def __init__(self, sink: Callable[[list[Line]], None], *, tee: bool = True) -> None:
        self._sink = sink
        self._tee = tee
        self._lock = threading.Lock()
        self._pipes: dict[int, tuple[int, int, _LineSplitter]] = {}  # read fd -> (target fd, saved fd, ...)
        self._saved: dict[int, int] = {}
        self._stop_r, self._stop_w = -1, -1
        self._thread: threading.Thread | None = None
        self._orig_streams: tuple[Any, Any] | None = None
        # Text written to a kernel's streams, split into lines like the pipes' bytes.
        self._direct: dict[int, _LineSplitter] = {
            STDOUT: _LineSplitter(STDOUT),
            STDERR: _LineSplitter(STDERR),
        }
        self.active = False

    def start(self) -> bool:
        """Starts capturing; False (and nothing changed) when the fds cannot be redirected."""
        try:
            for fd, stream in ((1, STDOUT), (2, STDERR)):
                with contextlib.suppress(Exception):
                    (sys.stdout if fd == 1 else sys.stderr).flush()
                saved = os.dup(fd)
                read, write = os.pipe()
                os.set_blocking(read, False)
                os.dup2(write, fd)
                os.close(write)
                self._saved[fd] = saved
                self._pipes[read] = (fd, saved, _LineSplitter(stream))
            self._stop_r, self._stop_w = os.pipe()
        except OSError:
            self._restore_fds()
            return False
        self._orig_streams = (sys.stdout, sys.stderr)
        if sys.stdout is not None:
            sys.stdout = self._wrap(sys.stdout, 1, STDOUT)
        if sys.stderr is not None:
            sys.stderr = self._wrap(sys.stderr, 2, STDERR)
        self.active = True
        self._thread = threading.Thread(target=self._run, name="tracklog-console", daemon=True)
        self._thread.start()
        return True

    def _wrap(self, inner: TextIO, fd: int, stream: int) -> _Wrapped:
        record: Callable[[str], None] | None = None
        if in_kernel_stream(inner):
            splitter = self._direct[stream]

            def record(text: str) -> None:
                self._record_direct(splitter, text)

        return _Wrapped(inner, self.drain, self._saved[fd], record)

    def _record_direct(self, splitter: _LineSplitter, text: str) -> None:
        """Records text written to a kernel stream, split under the lock like the pipes' bytes."""
        lines: list[Line] = []
        with self._lock:
            if not self.active:
                return
            splitter.feed(text.encode("utf-8", errors="replace"), time.time(), lines)
        if lines:
            self._sink(lines)

    def drain(self) -> None:
        """Moves whatever is in the pipes to the terminal and the sink. Safe from any thread.

        Every use of the capture fds happens under ``_lock`` and only while ``active``: once stop()
        has closed them their numbers may be reused (by a spool, a socket), and a late drain from
        another thread must never read or write those."""
        lines: list[Line] = []
        with self._lock:
            if not self.active:
                return
            now = time.time()
            for read, (_, saved, splitter) in list(self._pipes.items()):
                while True:
                    try:
                        data = os.read(read, 65536)
                    except BlockingIOError:
                        break
                    except OSError:
                        break
                    if not data:
                        break
                    if self._tee:
                        _write_all(saved, data)
                    splitter.feed(data, now, lines)
        if lines:
            self._sink(lines)

    def disown(self) -> None:
        """In a forked child: stops using the capture without touching it. The child keeps writing
        into the parent's pipes (so the parent records a DataLoader worker's prints) but never reads
        them. The lock is replaced first: at fork it may have been held by the parent's reader
        thread, which does not exist in the child, and would then stay locked forever."""
        self._lock = threading.Lock()
        self.active = False

    def _run(self) -> None:
        try:
            reads = [*self._pipes, self._stop_r]
            while self.active:
                ready, _, _ = select.select(reads, [], [], 1.0)
                if self._stop_r in ready:
                    return
                if ready:
                    self.drain()
        except Exception:  # capture must never break the script's output: give the fds back
            self.stop()

    def stop(self) -> None:
        """Stops capturing, restores fds and streams, records the unfinished last lines."""
        self.drain()
        with self._lock:
            if not self.active:
                return
            self.active = False
        if self._orig_streams is not None:
            # CPython's print() holds sys.stdout as a borrowed reference while it writes (and the GIL
            # is released during the write): a wrapper freed by this swap would crash a print() in
            # another thread. Wrappers are kept for the life of the process; they are tiny.
            _RETIRED.extend(s for s in (sys.stdout, sys.stderr) if isinstance(s, _Wrapped))
            if isinstance(sys.stdout, _Wrapped):
                sys.stdout = self._orig_streams[0]
            if isinstance(sys.stderr, _Wrapped):
                sys.stderr = self._orig_streams[1]
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        lines: list[Line] = []
        with self._lock:
            # Point fds 1 and 2 back at the terminal first, then move what is left in the pipes there.
            for fd, saved in self._saved.items():
                with contextlib.suppress(OSError):
                    os.dup2(saved, fd)
            now = time.time()
            for read, (_, saved, splitter) in self._pipes.items():
                with contextlib.suppress(OSError):
                    data = os.read(read, 1 << 20)
                    if data and self._tee:
                        _write_all(saved, data)
                    if data:
                        splitter.feed(data, now, lines)
                splitter.flush(now, lines)
            for splitter in self._direct.values():
                splitter.flush(now, lines)
            for fd in [*self._pipes, self._stop_r, self._stop_w]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pipes.clear()
            self._restore_fds()
        if lines:
            self._sink(lines)

    def _restore_fds(self) -> None:
        for fd, saved in self._saved.items():
            with contextlib.suppress(OSError):
                os.dup2(saved, fd)
            with contextlib.suppress(OSError):
                os.close(saved)
        self._saved.clear()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        except OSError:
            return  # the terminal is gone; keep recording
        view = view[written:]
