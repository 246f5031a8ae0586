"""Where a run's frames go: the daemon over one gRPC stream, or (offline) straight into the spool.

Both transports report a *durable* seq: every frame up to it is safe in the spool. The sender keeps
frames above it in memory and resends them after a reconnect.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import grpc

from tracklog import _launch, _signals, _spool
from tracklog._errors import CommError, RunBusy
from tracklog.v1 import daemon_pb2, daemon_pb2_grpc, records_pb2


class Transport(Protocol):
    url: str

    def connect(self) -> int:
        """Opens the run; returns the highest seq already durable. Raises CommError."""

    def send(self, frames: Sequence[tuple[int, bytes]], *, ack: bool = False) -> None:
        """Queues frames (in seq order) for writing; never blocks on the peer. ``ack``: the caller
        will wait for them to be durable, so the peer should report it at once."""

    @property
    def broken(self) -> bool: ...

    def durable_seq(self) -> int: ...

    def write_error(self) -> str:
        """The peer's last word on writing (``Ack.error``): empty while it writes what it gets; else
        it kept nothing above ``durable_seq`` and the frames must be sent again."""

    def queued_bytes(self) -> int:
        """Bytes of frames handed to ``send`` that the connection has not taken yet."""

    def wait_durable(self, seq: int, timeout: float) -> bool: ...

    def close(self) -> None: ...


class SpoolTransport:
    """Offline mode: the training process itself is the spool's single writer."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self.url = ""
        self._writer: _spool.SpoolWriter | None = None

    def connect(self) -> int:
        # A writer whose append failed (disk full) stays usable: the failed frames were cut back and
        # are sent again. Opening a second one would be refused by the first one's lock.
        if self._writer is None:
            try:
                self._writer = _spool.SpoolWriter(self.spool)
            except _spool.SpoolBusy as exc:
                raise RunBusy(f"{exc}: {_BUSY_HINT}") from exc
            except (OSError, _spool.SpoolError) as exc:
                raise CommError(f"cannot open {self.spool}: {exc}") from exc
        return self._writer.last_seq

    def send(self, frames: Sequence[tuple[int, bytes]], *, ack: bool = False) -> None:
        assert self._writer is not None  # durable_seq reports every write at once: ``ack`` is moot
        try:
            self._writer.append(frames)
        except (OSError, _spool.SpoolError) as exc:
            raise CommError(f"cannot write {self.spool}: {exc}") from exc

    @property
    def broken(self) -> bool:
        return self._writer is None

    def durable_seq(self) -> int:
        return 0 if self._writer is None else self._writer.last_seq

    def write_error(self) -> str:
        return ""  # a failed write raises CommError at once

    def queued_bytes(self) -> int:
        return 0

    def wait_durable(self, seq: int, timeout: float) -> bool:
        if self._writer is None:
            return False
        try:
            self._writer.sync()
        except OSError:
            return False
        return self._writer.last_seq >= seq

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


_CLOSE = object()
_BUSY_HINT = (
    "a run has one writer at a time; start this one with another id, or resume it once that process has ended"
)


class DaemonTransport:
    """One run's bidirectional stream to the daemon; a reader thread takes acks off the stream."""

    def __init__(
        self,
        home: Path,
        attach: daemon_pb2.Attach,
        *,
        start_timeout: float,
        attach_timeout: float = 5.0,
        spawn: bool = True,
    ) -> None:
        self.home = home
        self._spawn = spawn
        self.url = ""
        self._attach = attach
        self._start_timeout = start_timeout
        self._attach_timeout = attach_timeout
        self._cond = threading.Condition()
        self._durable = 0
        self._write_error = ""
        # Frames put on the request queue and not yet taken by gRPC (it stops taking them while the
        # daemon does not read): counted against the sender's memory cap.
        self._queued = 0
        self._generation = 0  # which stream the reader thread belongs to; stale readers are ignored
        self._attached = False
        self._busy = ""  # the daemon's refusal: another live process writes the run
        self._acks = 0  # acks received: wait_durable returns early on one that reports an error
        self._broken = True
        self._channel: grpc.Channel | None = None
        self._call: grpc.Future[Any] | None = None  # the stream: cancelled at close if frames are unacked
        self._sent_seq = 0  # the highest seq handed to send() on this stream
        self._requests: queue.SimpleQueue[object] = queue.SimpleQueue()

    def connect(self) -> int:
        self.close()
        target = _launch.ensure_daemon(self.home, timeout=self._start_timeout, start=self._spawn)
        self._channel = _launch.channel(target)
        stub = daemon_pb2_grpc.DaemonStub(self._channel)
        requests: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._requests = requests
        requests.put((daemon_pb2.ClientMessage(attach=self._attach), 0))
        with self._cond:
            self._generation += 1
            generation = self._generation
            self._attached = False
            self._busy = ""
            self._broken = False
            self._write_error = ""
            self._queued = 0
        call = stub.RunStream(self._outgoing(requests, generation))
        self._call = cast("grpc.Future[Any]", call)
        self._sent_seq = 0
        reader = threading.Thread(
            target=self._read, args=(call, generation), name="tracklog-acks", daemon=True
        )
        reader.start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._attached or self._broken, self._attach_timeout):
                self._broken = True
            if not self._attached:
                if self._busy:
                    raise RunBusy(f"{self._busy}: {_BUSY_HINT}")
                raise CommError("the tracklog daemon did not accept the run")
            return self._durable

    def _outgoing(
        self, requests: queue.SimpleQueue[object], generation: int
    ) -> Iterator[daemon_pb2.ClientMessage]:
        """The stream's requests, as gRPC takes them; what it took no longer counts as queued."""
        while True:
            item = requests.get()
            if item is _CLOSE:
                return
            message, size = cast(tuple[daemon_pb2.ClientMessage, int], item)
            if size:
                with self._cond:
                    if generation == self._generation:
                        self._queued -= size
            yield message

    def _read(self, call: Iterator[daemon_pb2.DaemonMessage], generation: int) -> None:
        # Runs until the stream ends; never raises: a broken stream only marks the transport broken.
        try:
            for message in call:
                kind = message.WhichOneof("kind")
                with self._cond:
                    if generation != self._generation:
                        return
                    if kind == "ack":
                        self._durable = max(self._durable, message.ack.durable_seq)
                        self._write_error = message.ack.error
                        self._acks += 1
                    elif kind == "links":
                        self.url = message.links.url
                    elif kind == "attached":
                        self._durable = message.attached.durable_seq
                        self.url = message.attached.url or self.url
                        self._attached = True
                    self._cond.notify_all()
                if kind == "stop":
                    # Said on stderr, so the run's console log keeps why it ended killed.
                    sys.stderr.write(f"tracklog: stopping the run: {message.stop.reason}\n")
                    _signals.interrupt_main_for_stop()  # a stop from the API ends the run as killed
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code == grpc.StatusCode.ALREADY_EXISTS:  # another live process writes this run
                with self._cond:
                    if generation == self._generation:
                        self._busy = str(exc.details())
        finally:
            with self._cond:
                if generation == self._generation:
                    self._broken = True
                self._cond.notify_all()

    def send(self, frames: Sequence[tuple[int, bytes]], *, ack: bool = False) -> None:
        if self._broken:
            raise CommError("the stream to the tracklog daemon is closed")
        batch = daemon_pb2.FrameBatch(frames=[records_pb2.Frame(seq=s, record=r) for s, r in frames], ack=ack)
        size = sum(len(r) for _, r in frames)
        if size:
            with self._cond:
                self._queued += size
                self._sent_seq = max(self._sent_seq, frames[-1][0])
        self._requests.put((daemon_pb2.ClientMessage(frames=batch), size))

    @property
    def broken(self) -> bool:
        return self._broken

    def durable_seq(self) -> int:
        return self._durable

    def write_error(self) -> str:
        return self._write_error

    def queued_bytes(self) -> int:
        return self._queued

    def wait_durable(self, seq: int, timeout: float) -> bool:
        """Waits until ``seq`` is durable, the stream breaks, or an ack says the daemon cannot write."""
        with self._cond:
            acks = self._acks

            def done() -> bool:
                return self._durable >= seq or self._broken or self._failed_since(acks)

            self._cond.wait_for(done, timeout)
            return self._durable >= seq

    def _failed_since(self, acks: int) -> bool:
        return self._acks != acks and bool(self._write_error)

    def close(self) -> None:
        self._requests.put(_CLOSE)
        call, self._call = self._call, None
        if call is not None and self._durable < self._sent_seq:
            # The daemon did not ack everything (stalled, e.g. SIGSTOP): gRPC may be blocked writing
            # to it, and closing the channel waits for that write, forever if the daemon never reads
            # again. The stream is cancelled and the channel left to the process's exit; what was not
            # acked is the sender's to keep (the spool fallback).
            call.cancel()
            self._channel = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
