"""Fakes and helpers for tests of the daemon and of code that talks to it or to a store.

- ``FakeStore``: an in-memory Store servicer with the real ingest semantics (in order, at most once
  per (run, source, seq), ``accepted=false`` on a gap, the daemon's frames only for a run whose
  RunStart it holds) and switches to fail; serve it with
  ``FakeStoreServer`` on a real gRPC port.
- ``StaticLocalServer``: a local-server seam for ``Daemon`` that names a fixed store.
- ``FakePids``: a pid-liveness seam for ``Daemon`` (which training processes are alive).
- ``RunStreamClient``: the training process's side of ``Daemon.RunStream``, driven by hand.
- ``run_start`` / ``history`` / ``finish``: serialized records to put in frames.
- ``wait_until``: poll a condition with a deadline (for state with nothing to wait on).
- ``FakeCounters`` (psutil-like, with ``FakeProcessState`` per pid), ``FakeNvml`` (with
  ``FakeGpu`` devices) and ``FakeClock``: the metrics-source and clock seams of the capture
  (``SystemSampler``, ``Gpus``, ``capture_metadata``, ``Daemon(metrics_source=..., nvml=...)``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures

import grpc

from tracklog._history import BatchBuilder
from tracklog.testing import FakeClock
from tracklog.v1 import daemon_pb2, daemon_pb2_grpc, records_pb2, store_pb2, store_pb2_grpc
from tracklogd._config import GRPC_MESSAGE_OPTIONS
from tracklogd._fakes import (
    FakeCounters,
    FakeGpu,
    FakeNvml,
    FakeNVMLError,
    FakeProcessState,
)
from tracklogd._records import ref_key

__all__ = [
    "FakeClock",
    "FakeCounters",
    "FakeGpu",
    "FakeNVMLError",
    "FakeNvml",
    "FakePids",
    "FakeProcessState",
    "FakeStore",
    "FakeStoreServer",
    "RunStreamClient",
    "StaticLocalServer",
    "finish",
    "frames",
    "history",
    "make_ref",
    "run_start",
    "wait_until",
]


def make_ref(run_id: str = "run1", project: str = "proj", entity: str = "me") -> records_pb2.RunRef:
    return records_pb2.RunRef(entity=entity, project=project, id=run_id)


def run_start(ref: records_pb2.RunRef, **fields: object) -> bytes:
    """A serialized Record holding a RunStart for ``ref`` (extra RunStart fields by keyword)."""
    start = records_pb2.RunStart(ref=ref, **fields)  # type: ignore[arg-type]
    return records_pb2.Record(start=start).SerializeToString()


def history(step: int, **values: float) -> bytes:
    """A serialized Record holding one history row at ``step``."""
    builder = BatchBuilder()
    builder.add(step, 1_700_000_000.0 + step, values or {"x": float(step)})
    return records_pb2.Record(history=builder.encode()).SerializeToString()


def finish(
    state: records_pb2.RunState.ValueType = records_pb2.RUN_STATE_FINISHED, exit_code: int = 0
) -> bytes:
    record = records_pb2.Record(finish=records_pb2.Finish(state=state, exit_code=exit_code, end_time=1.0))
    return record.SerializeToString()


def frames(ref: records_pb2.RunRef, rows: int, *, finished: bool = False) -> list[tuple[int, bytes]]:
    """A run's frames: seq 1 the RunStart, then ``rows`` history rows, then a Finish if asked."""
    out = [(1, run_start(ref))]
    out += [(seq, history(seq - 2)) for seq in range(2, rows + 2)]
    if finished:
        out.append((rows + 2, finish()))
    return out


def wait_until(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Polls ``condition`` until it is true or ``timeout`` passes; returns its last truth."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return bool(condition())
        time.sleep(interval)  # polling: the condition is observable state with no event to wait on
    return True


def _through(frame: records_pb2.Frame) -> int:
    """The last seq a frame accounts for: its own, or the last of the frames a FramesLost reports."""
    record = records_pb2.Record.FromString(frame.record) if frame.record[:1] == b"\x62" else None
    return record.lost.last_seq if record is not None and record.WhichOneof("kind") == "lost" else frame.seq


class FakeStore(store_pb2_grpc.StoreServicer):
    """An in-memory store with the real ingest contract. Thread-safe.

    Switches: ``unavailable`` (every call fails UNAVAILABLE), ``fail_next`` (the next ingests fail
    with these codes, in order), ``reject`` (run keys whose ingests fail INVALID_ARGUMENT),
    ``refuse_records`` (serialized records whose every ingest fails INVALID_ARGUMENT, as a store that
    refuses a whole batch for one bad record does), ``stop_runs`` (run keys named as stopped in
    heartbeat answers), ``stop_on_ingest`` (run keys whose ingest answers say a stop is pending).
    """

    def __init__(self, http_url: str = "http://store.test") -> None:
        self.http_url = http_url
        self.unavailable = False
        self.fail_next: list[grpc.StatusCode] = []
        self.reject: set[str] = set()
        self.refuse_records: set[bytes] = set()
        self.stop_runs: set[str] = set()
        self.stop_on_ingest: set[str] = set()
        self.requests: list[store_pb2.IngestRequest] = []  # every ingest received, failed ones too
        self.heartbeats: list[list[str]] = []
        self._applied: dict[str, list[records_pb2.Frame]] = {}
        self._daemon_applied: dict[str, list[records_pb2.Frame]] = {}  # SOURCE_DAEMON frames
        self._last: dict[str, int] = {}  # applied_through per run (past the seqs a FramesLost covers)
        self._cond = threading.Condition()

    # -- inspection --------------------------------------------------------------------------------

    def seqs(self, key: str) -> list[int]:
        """The seqs applied for run ``entity/project/id``, in order (each at most once)."""
        with self._cond:
            return [frame.seq for frame in self._applied.get(key, [])]

    def records(self, key: str) -> list[records_pb2.Record]:
        with self._cond:
            payloads = [frame.record for frame in self._applied.get(key, [])]
        return [records_pb2.Record.FromString(payload) for payload in payloads]

    def daemon_records(self, key: str) -> list[records_pb2.Record]:
        """The records applied from the daemon's own sequence of run ``key``, in seq order."""
        with self._cond:
            payloads = [frame.record for frame in self._daemon_applied.get(key, [])]
        return [records_pb2.Record.FromString(payload) for payload in payloads]

    def daemon_seqs(self, key: str) -> list[int]:
        with self._cond:
            return [frame.seq for frame in self._daemon_applied.get(key, [])]

    def wait_for_seq(self, key: str, seq: int, timeout: float = 10.0) -> bool:
        """Waits until frame ``seq`` of run ``key`` is applied."""
        with self._cond:
            return self._cond.wait_for(lambda: self._last.get(key, 0) >= seq, timeout)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Waits until ``condition()`` holds; it is re-checked after every call the store receives."""
        with self._cond:
            return self._cond.wait_for(condition, timeout)

    def forget(self, key: str) -> None:
        """Drops everything held for a run, like a store whose database was reset."""
        with self._cond:
            self._applied.pop(key, None)
            self._daemon_applied.pop(key, None)
            self._last.pop(key, None)

    # -- the Store service -------------------------------------------------------------------------

    def Ingest(
        self, request: store_pb2.IngestRequest, context: grpc.ServicerContext
    ) -> store_pb2.IngestResponse:
        key = ref_key(request.ref)
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()
            code = self._failure(key)
            if code is None and any(frame.record in self.refuse_records for frame in request.frames):
                code = grpc.StatusCode.INVALID_ARGUMENT
            previous = 0
            for frame in request.frames:  # ascending without gaps (a FramesLost covers its range)
                if code is None and previous and frame.seq != previous + 1:
                    code = grpc.StatusCode.INVALID_ARGUMENT
                previous = _through(frame)
        if code is not None:
            context.abort(code, f"FakeStore fails this ingest with {code.name}")
        with self._cond:
            if request.source == store_pb2.SOURCE_DAEMON:
                if not self._applied.get(key):  # the store does not know the run yet
                    return store_pb2.IngestResponse(accepted=False, applied_through=0)
                own = self._daemon_applied.setdefault(key, [])
                fresh = [frame for frame in request.frames if frame.seq > len(own)]
                if fresh and fresh[0].seq != len(own) + 1:
                    return store_pb2.IngestResponse(accepted=False, applied_through=len(own))
                own.extend(fresh)
                self._cond.notify_all()
                return store_pb2.IngestResponse(accepted=True, applied_through=len(own))
            held = self._applied.setdefault(key, [])
            last = self._last.get(key, 0)
            new = [frame for frame in request.frames if frame.seq > last]
            if new and new[0].seq != last + 1:
                return store_pb2.IngestResponse(accepted=False, applied_through=last)
            held.extend(new)
            if new:
                self._last[key] = _through(new[-1])
            self._cond.notify_all()
            return store_pb2.IngestResponse(
                accepted=True,
                applied_through=self._last.get(key, 0),
                stop_requested=key in self.stop_on_ingest,
            )

    def Heartbeat(
        self, request: store_pb2.HeartbeatRequest, context: grpc.ServicerContext
    ) -> store_pb2.HeartbeatResponse:
        keys = [ref_key(ref) for ref in request.runs]
        with self._cond:
            unavailable = self.unavailable
            if not unavailable:
                self.heartbeats.append(keys)
                self._cond.notify_all()
        if unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "FakeStore is unavailable")
        stop = [ref for ref in request.runs if ref_key(ref) in self.stop_runs]
        return store_pb2.HeartbeatResponse(stop=stop)

    def CheckRunId(
        self, request: store_pb2.CheckRunIdRequest, context: grpc.ServicerContext
    ) -> store_pb2.CheckRunIdResponse:
        """A new id unless the run has frames here (then the writer's own: the fake keeps no tokens)."""
        if self.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "FakeStore is unavailable")
        with self._cond:
            known = ref_key(request.ref) in self._applied
        verdict = store_pb2.RUN_ID_OWN if known else store_pb2.RUN_ID_FREE
        return store_pb2.CheckRunIdResponse(verdict=verdict, last_step=-1)

    def ServerInfo(
        self, request: store_pb2.ServerInfoRequest, context: grpc.ServicerContext
    ) -> store_pb2.ServerInfoResponse:
        if self.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "FakeStore is unavailable")
        return store_pb2.ServerInfoResponse(version="fake", http_url=self.http_url, heartbeat_timeout=120.0)

    # The fake models what the daemon uses (ingest, heartbeats); reading data back is the real
    # server's business, so these answer UNIMPLEMENTED.
    def SystemHistory(
        self, request: store_pb2.SystemHistoryRequest, context: grpc.ServicerContext
    ) -> Iterator[records_pb2.SystemBatch]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore keeps no system metrics")

    def Logs(
        self, request: store_pb2.LogsRequest, context: grpc.ServicerContext
    ) -> Iterator[records_pb2.OutputLines]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore keeps no console output")

    def ListFiles(
        self, request: store_pb2.ListFilesRequest, context: grpc.ServicerContext
    ) -> store_pb2.ListFilesResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore keeps no files")

    def UpdateRun(
        self, request: store_pb2.UpdateRunRequest, context: grpc.ServicerContext
    ) -> store_pb2.RunView:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore does not edit runs")

    def DeleteRuns(
        self, request: store_pb2.DeleteRunsRequest, context: grpc.ServicerContext
    ) -> store_pb2.DeleteRunsResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore does not delete runs")

    def StopRun(
        self, request: store_pb2.StopRunRequest, context: grpc.ServicerContext
    ) -> store_pb2.StopRunResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore does not stop runs")

    def UpdateRuns(
        self, request: store_pb2.UpdateRunsRequest, context: grpc.ServicerContext
    ) -> store_pb2.UpdateRunsResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore does not edit runs")

    def SearchRuns(
        self, request: store_pb2.SearchRunsRequest, context: grpc.ServicerContext
    ) -> store_pb2.SearchRunsResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore does not search runs")

    def GroupRuns(
        self, request: store_pb2.GroupRunsRequest, context: grpc.ServicerContext
    ) -> store_pb2.GroupRunsResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore does not group runs")

    def DescribeProject(
        self, request: store_pb2.DescribeProjectRequest, context: grpc.ServicerContext
    ) -> store_pb2.ProjectDescription:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore does not describe projects")

    def DeleteRunsByFilter(
        self, request: store_pb2.DeleteRunsByFilterRequest, context: grpc.ServicerContext
    ) -> store_pb2.DeleteRunsByFilterResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore does not delete runs")

    def GetFile(
        self, request: store_pb2.GetFileRequest, context: grpc.ServicerContext
    ) -> Iterator[records_pb2.FileChunk]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore keeps no files")

    def GetRun(self, request: store_pb2.GetRunRequest, context: grpc.ServicerContext) -> store_pb2.RunView:
        """A RunView with what the fake knows: name, state, exit code and last seq."""
        key = ref_key(request.ref)
        with self._cond:
            known = key in self._applied
        if not known:
            context.abort(grpc.StatusCode.NOT_FOUND, f"run {key} not found")
        view = store_pb2.RunView(ref=request.ref, state=records_pb2.RUN_STATE_RUNNING, last_step=-1)
        for record in self.records(key):
            kind = record.WhichOneof("kind")
            if kind == "start":
                view.name, view.host, view.run_dir = (
                    record.start.name,
                    record.start.host,
                    record.start.run_dir,
                )
            elif kind == "finish":
                view.state, view.exit_code = record.finish.state, record.finish.exit_code
            elif kind == "history":
                view.history_rows += len(records_pb2.HistoryBatch.FromString(record.history).steps) // 8
            elif kind == "lost":
                view.rows_lost += record.lost.rows
                view.problems.append(f"frames {record.lost.first_seq}-{record.lost.last_seq} lost")
        with self._cond:
            view.last_seq = self._last.get(key, 0)
        return view

    def ListRuns(
        self, request: store_pb2.ListRunsRequest, context: grpc.ServicerContext
    ) -> store_pb2.ListRunsResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore does not list runs")

    def History(
        self, request: store_pb2.HistoryRequest, context: grpc.ServicerContext
    ) -> Iterator[records_pb2.HistoryBatch]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "FakeStore does not serve history")

    def _failure(self, key: str) -> grpc.StatusCode | None:
        # Condition held.
        if self.unavailable:
            return grpc.StatusCode.UNAVAILABLE
        if self.fail_next:
            return self.fail_next.pop(0)
        if key in self.reject:
            return grpc.StatusCode.INVALID_ARGUMENT
        return None


class FakeStoreServer:
    """Serves a FakeStore on 127.0.0.1 (port 0: any free port). ``stop()`` then ``start()`` again
    brings the same store back on the same port, like a server restart."""

    def __init__(self, store: FakeStore | None = None, port: int = 0) -> None:
        self.store = store if store is not None else FakeStore()
        self.port = port
        self._server: grpc.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeStoreServer:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=GRPC_MESSAGE_OPTIONS)
        store_pb2_grpc.add_StoreServicer_to_server(self.store, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        if not self.port:
            raise RuntimeError("FakeStoreServer cannot bind its port")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def __enter__(self) -> FakeStoreServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StaticLocalServer:
    """A Daemon ``local_server`` seam naming a fixed store (None: no local server yet)."""

    def __init__(self, target: str | None) -> None:
        self._target = target
        self._on_ready: Callable[[], None] = lambda: None

    def start(self, on_ready: Callable[[], None]) -> None:
        self._on_ready = on_ready
        if self._target is not None:
            on_ready()

    def target(self) -> str | None:
        return self._target

    def http_url(self) -> str:
        return ""

    def set_target(self, target: str | None) -> None:
        self._target = target
        if target is not None:
            self._on_ready()

    def close(self) -> None:
        pass


class FakePids:
    """A Daemon ``pid_alive`` seam: the pids in ``alive`` run, every other pid is gone."""

    def __init__(self, *alive: int) -> None:
        self.alive = set(alive)

    def __call__(self, pid: int) -> bool:
        return pid in self.alive


_END = object()


class RunStreamClient:
    """One run's stream to a daemon, as a training process holds it, driven step by step.

    ``attach()`` then ``send(frames)`` (waits for the ack), ``close()`` (half-close: a clean end)
    or ``cancel()`` (breaks the stream, as a dying process does). Replies queue up in order;
    ``error`` is the gRPC error the stream ended with, if any.
    """

    def __init__(
        self,
        target: str,
        ref: records_pb2.RunRef,
        run_dir: str,
        *,
        pid: int = 0,
        server: str = "",
        timeout: float = 10.0,
    ) -> None:
        self.attach_message = daemon_pb2.Attach(ref=ref, run_dir=run_dir, pid=pid, server=server)
        self.timeout = timeout
        self.error: grpc.RpcError | None = None
        self._channel = grpc.insecure_channel(target, options=GRPC_MESSAGE_OPTIONS)
        self._requests: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._replies: queue.SimpleQueue[daemon_pb2.DaemonMessage | None] = queue.SimpleQueue()
        self._call: grpc.Future[object] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> RunStreamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def attach(self) -> daemon_pb2.Attached:
        stub = daemon_pb2_grpc.DaemonStub(self._channel)
        self._requests.put(daemon_pb2.ClientMessage(attach=self.attach_message))
        call = stub.RunStream(self._request_iterator())
        self._call = call  # type: ignore[assignment]
        self._reader = threading.Thread(target=self._read, args=(call,), daemon=True)
        self._reader.start()
        reply = self.next_reply()
        if reply is None or reply.WhichOneof("kind") != "attached":
            raise AssertionError(f"expected Attached, got {reply!r} (error: {self.error!r})")
        return reply.attached

    def send_nowait(self, batch: Sequence[tuple[int, bytes]], *, ack: bool = True) -> None:
        """Sends one batch; ``ack=False`` lets the daemon hold its ack (FrameBatch.ack)."""
        frames_ = [records_pb2.Frame(seq=seq, record=payload) for seq, payload in batch]
        message = daemon_pb2.FrameBatch(frames=frames_, ack=ack)
        self._requests.put(daemon_pb2.ClientMessage(frames=message))

    def send(self, batch: Sequence[tuple[int, bytes]]) -> int:
        """Sends one batch, asking for its ack, and returns the durable seq of the ack. Raises
        AssertionError when the stream ends instead (``error`` says why)."""
        return self.send_for_ack(batch).durable_seq

    def send_for_ack(self, batch: Sequence[tuple[int, bytes]]) -> daemon_pb2.Ack:
        """Sends one batch, asking for its ack, and returns the ack (with its error, if any)."""
        self.send_nowait(batch)
        while True:
            reply = self.next_reply()
            if reply is None:
                raise AssertionError(f"the stream ended before the ack: {self.error!r}")
            if reply.WhichOneof("kind") == "ack":
                return reply.ack

    def next_reply(self, timeout: float | None = None) -> daemon_pb2.DaemonMessage | None:
        """The next message from the daemon; None when the stream has ended."""
        try:
            return self._replies.get(timeout=self.timeout if timeout is None else timeout)
        except queue.Empty:
            raise AssertionError("no reply from the daemon in time") from None

    def wait_ended(self, timeout: float | None = None) -> grpc.RpcError | None:
        """Waits for the stream to end; returns its error (None: it ended cleanly)."""
        if self._reader is not None:
            self._reader.join(self.timeout if timeout is None else timeout)
            if self._reader.is_alive():
                raise AssertionError("the stream did not end in time")
        return self.error

    def close(self) -> None:
        """Ends the stream cleanly (the client half-closes) and waits for the daemon to end it."""
        self._requests.put(_END)
        self.wait_ended()
        self._channel.close()

    def cancel(self) -> None:
        """Breaks the stream without a clean end, as a killed process does."""
        self._requests.put(_END)
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.join(self.timeout)
        self._channel.close()

    def _request_iterator(self) -> Iterator[daemon_pb2.ClientMessage]:
        while True:
            item = self._requests.get()
            if item is _END:
                return
            assert isinstance(item, daemon_pb2.ClientMessage)
            yield item

    def _read(self, call: Iterator[daemon_pb2.DaemonMessage]) -> None:
        try:
            for reply in call:
                self._replies.put(reply)
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            self._replies.put(None)
