"""Helpers for tests: read what a run wrote to its spool, and a fake daemon to point the SDK at."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from tracklog import _history, _home, _spool
from tracklog.v1 import daemon_pb2, daemon_pb2_grpc, records_pb2

__all__ = ["FailingFileOps", "FakeClock", "FakeDaemon", "history_rows", "read_records", "spool_of"]


class FailingFileOps:
    """A spool writer's file layer (``SpoolWriter(ops=...)``, ``Daemon(spool_ops=...)``) failing as a
    sick disk does, with ``error`` (an errno): the next ``write_fails`` writes fail after writing half
    their bytes, the next ``cut_fails`` ftruncates and ``sync_fails`` fsyncs fail. Thread-safe enough
    for tests: each counter is read and decremented by the one thread that writes the spool."""

    def __init__(self, error: int) -> None:
        self.error = error
        self.write_fails = 0
        self.cut_fails = 0
        self.sync_fails = 0

    def _fail(self) -> OSError:
        return OSError(self.error, os.strerror(self.error))

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        if self.write_fails:
            self.write_fails -= 1
            os.pwrite(fd, data[: len(data) // 2], offset)
            raise self._fail()
        return os.pwrite(fd, data, offset)

    def ftruncate(self, fd: int, size: int) -> None:
        if self.cut_fails:
            self.cut_fails -= 1
            raise self._fail()
        os.ftruncate(fd, size)

    def fsync(self, fd: int) -> None:
        if self.sync_fails:
            self.sync_fails -= 1
            raise self._fail()
        os.fsync(fd)


class FakeClock:
    """A ``clock`` seam for the SDK, the daemon and the server: seconds that move only with
    ``advance``. Safe to read from other threads."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now


def spool_of(run_dir: str | os.PathLike[str]) -> Path:
    """The spool file of a run directory (the training process's; not ``run-<id>.daemon.tlog``, the
    daemon's own spool of the run)."""
    spools = [p for p in sorted(Path(run_dir).glob("run-*.tlog")) if not p.name.endswith(".daemon.tlog")]
    if len(spools) != 1:
        raise FileNotFoundError(f"expected one run-*.tlog in {run_dir}, found {len(spools)}")
    return spools[0]


def read_records(run_dir: str | os.PathLike[str]) -> list[tuple[int, records_pb2.Record]]:
    """Every (seq, Record) in a run directory's spool, in order."""
    return [
        (frame.seq, records_pb2.Record.FromString(frame.payload))
        for frame in _spool.frames(spool_of(run_dir))
    ]


def history_rows(records: Iterable[tuple[int, records_pb2.Record]]) -> list[dict[str, Any]]:
    """The history rows carried by ``records``, decoded as ``Api().run(...).history()`` returns them
    (without ``_runtime``)."""
    batches = [
        records_pb2.HistoryBatch.FromString(record.history)
        for _, record in records
        if record.WhichOneof("kind") == "history"
    ]
    return list(_history.decode_rows(batches))


class FakeDaemon(daemon_pb2_grpc.DaemonServicer):
    """An in-memory daemon servicer: keeps each run's frames, acks them, and can drop a stream.

    It acks a batch only when the batch asks (``FrameBatch.ack``): the strictest daemon allowed, one
    that holds every ack it may, so a client that waits for durability without asking hangs here.
    ``batches`` lists each batch received as (frame count, asked for its ack).

    ``drop_after``: break the stream of a run once it holds this many frames (once per setting), to
    exercise the SDK's reconnect and resend. ``reading``: cleared, the daemon stalls (it stops
    reading its streams, as a daemon stopped with SIGSTOP). ``write_error``: while non-empty, the
    daemon keeps nothing it receives and answers every batch with ``Ack(durable_seq, error)``, as a
    daemon whose disk is full. Its durable seq is the highest seq up to which it holds every frame.
    Serve it with ``serve(home)`` on the home's socket.
    """

    def __init__(self) -> None:
        self.frames: dict[str, dict[int, bytes]] = {}
        self.received: dict[str, int] = {}  # frames received, duplicates included
        self.batches: list[tuple[int, bool]] = []
        self.attaches = 0
        self.drop_after: int | None = None
        self.reading = threading.Event()
        self.reading.set()
        self.write_error = ""
        self._durable: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    def RunStream(
        self, request_iterator: Iterator[daemon_pb2.ClientMessage], context: grpc.ServicerContext
    ) -> Iterator[daemon_pb2.DaemonMessage]:
        path = ""
        for message in self._stalling(request_iterator, context):
            if message.WhichOneof("kind") == "attach":
                ref = message.attach.ref
                path = f"{ref.entity}/{ref.project}/{ref.id}"
                with self._lock:
                    self.attaches += 1
                    self.frames.setdefault(path, {})
                    durable = self._durable.setdefault(path, 0)
                yield daemon_pb2.DaemonMessage(attached=daemon_pb2.Attached(durable_seq=durable))
                continue
            with self._lock:
                held = self.frames[path]
                self.batches.append((len(message.frames.frames), message.frames.ack))
                error = self.write_error
                for frame in message.frames.frames:
                    self.received[path] = self.received.get(path, 0) + 1
                    if not error:
                        held.setdefault(frame.seq, frame.record)
                durable = self._durable[path]
                while durable + 1 in held:
                    durable += 1
                self._durable[path] = durable
                drop = self.drop_after is not None and len(held) >= self.drop_after
                if drop:
                    self.drop_after = None
            if drop:
                context.abort(grpc.StatusCode.UNAVAILABLE, "dropped by FakeDaemon")
            if message.frames.ack or error:
                yield daemon_pb2.DaemonMessage(ack=daemon_pb2.Ack(durable_seq=durable, error=error))

    def _stalling(
        self, requests: Iterator[daemon_pb2.ClientMessage], context: grpc.ServicerContext
    ) -> Iterator[daemon_pb2.ClientMessage]:
        # Takes no message off the stream while ``reading`` is clear, so gRPC's flow control pushes
        # back on the client.
        for message in requests:
            while not self.reading.wait(0.05):
                if not context.is_active():
                    return
            yield message

    def records(self, path: str) -> list[tuple[int, records_pb2.Record]]:
        with self._lock:
            held = dict(self.frames.get(path, {}))
        return [(seq, records_pb2.Record.FromString(held[seq])) for seq in sorted(held)]

    def serve(self, home: Path) -> FakeDaemon:
        _home.ensure_home(home)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        daemon_pb2_grpc.add_DaemonServicer_to_server(self, self._server)
        self._server.add_insecure_port(_home.daemon_target(home))
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None
