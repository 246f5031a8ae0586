"""The Daemon gRPC service: one RunStream per run, plus Status and Shutdown.

A RunStream call runs on two threads. A reader thread takes the client's messages, writes frames
through the registry and queues the replies; the gRPC handler thread yields queued replies. The
queue lets other threads (heartbeats forwarding a stop, a newer attach replacing this stream) send on
the stream too. What the daemon makes for a run (system metrics, metadata) never goes on the stream:
it goes to the daemon's own spool of the run (``_capture``). Invariants: the reader thread
never raises; every path through it ends the reply queue, so the handler thread never waits forever.
A spool the disk cannot write does not end the stream: acks carry the error (see ``_runs``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc

from tracklog.v1 import daemon_pb2, daemon_pb2_grpc
from tracklogd._capture import Capture
from tracklogd._errors import StreamRefused
from tracklogd._runs import RunRegistry, RunSlot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Abort:
    code: grpc.StatusCode
    reason: str


class StreamOutbox:
    """The reply side of one RunStream call; any thread may put, the handler thread yields."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[daemon_pb2.DaemonMessage | _Abort | None] = queue.SimpleQueue()

    def send(self, message: daemon_pb2.DaemonMessage) -> None:
        self._queue.put(message)

    def send_stop(self, reason: str) -> None:
        self._queue.put(daemon_pb2.DaemonMessage(stop=daemon_pb2.StopRequest(reason=reason)))

    def abort(self, code: grpc.StatusCode, reason: str) -> None:
        self._queue.put(_Abort(code, reason))

    def end(self) -> None:
        self._queue.put(None)

    def replies(self, context: grpc.ServicerContext) -> Iterator[daemon_pb2.DaemonMessage]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, _Abort):
                context.abort(item.code, item.reason)
            yield item


class DaemonService(daemon_pb2_grpc.DaemonServicer):
    def __init__(
        self,
        registry: RunRegistry,
        *,
        run_url: Callable[[RunSlot], str],
        status: Callable[[], daemon_pb2.StatusResponse],
        shutdown: Callable[[], None],
        capture: Capture | None = None,
        ack_interval: float = 1.0,  # DaemonConfig.ack_interval
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[daemon_pb2.ProbeRunRequest], daemon_pb2.ProbeRunResponse] | None = None,
    ) -> None:
        self._probe = probe
        self._registry = registry
        self._ack_interval = ack_interval
        self._clock = clock
        self._capture = capture
        self._run_url = run_url
        self._status = status
        self._shutdown = shutdown

    def RunStream(
        self,
        request_iterator: Iterator[daemon_pb2.ClientMessage],
        context: grpc.ServicerContext,
    ) -> Iterator[daemon_pb2.DaemonMessage]:
        outbox = StreamOutbox()
        if not context.add_callback(outbox.end):  # wakes the replies loop when the call ends
            return
        threading.Thread(
            target=self._read, args=(request_iterator, outbox), name="tracklogd-stream", daemon=True
        ).start()
        yield from outbox.replies(context)

    def _read(self, requests: Iterator[daemon_pb2.ClientMessage], outbox: StreamOutbox) -> None:
        slot: RunSlot | None = None
        url = ""
        acked_at = float("-inf")  # when this stream's last ack went out
        acked_error = ""  # the error that ack carried
        metadata_pid: int | None = None  # the client whose metadata is captured after the first ack
        try:
            for message in requests:
                kind = message.WhichOneof("kind")
                if kind == "attach" and slot is None:
                    slot, durable, new_process = self._registry.attach(message.attach, outbox)
                    url = self._run_url(slot)
                    metadata = self._capture is not None and self._capture.captures_metadata(new_process)
                    attached = daemon_pb2.Attached(durable_seq=durable, url=url, metadata=metadata)
                    outbox.send(daemon_pb2.DaemonMessage(attached=attached))
                    if self._capture is not None:  # its sampling starts once Attached is out
                        self._capture.attached(slot, message.attach.pid)
                        metadata_pid = message.attach.pid if metadata else None
                elif kind == "frames" and slot is not None:
                    durable, error = self._registry.append(slot, outbox, message.frames.frames)
                    if not url and (url := self._run_url(slot)):  # the store answered since Attach
                        outbox.send(daemon_pb2.DaemonMessage(links=daemon_pb2.RunLinks(url=url)))
                    asked = message.frames.ack or bool(slot.finish_seq)
                    if self._ack_due(asked, error, acked_error, acked_at):
                        acked_at, acked_error = self._clock(), error
                        ack = daemon_pb2.Ack(durable_seq=durable, error=error)
                        outbox.send(daemon_pb2.DaemonMessage(ack=ack))
                    self._after_frames(slot, metadata_pid)
                    metadata_pid = None
                else:
                    reason = (
                        "Attach sent twice on one stream"
                        if kind == "attach"
                        else f"expected Attach as the first message of a run stream, got {kind}"
                    )
                    raise StreamRefused(reason, grpc.StatusCode.FAILED_PRECONDITION)
        except grpc.RpcError:
            pass  # the client went away or the call was cancelled; detach() below decides what next
        except StreamRefused as exc:
            outbox.abort(exc.code, str(exc))
        except Exception:
            log.exception("run stream failed")
            outbox.abort(grpc.StatusCode.INTERNAL, "internal error in tracklogd; see its daemon.log")
        finally:
            try:
                if slot is not None:
                    self._registry.detach(slot, outbox)
            except Exception:
                log.exception("detaching run %s failed", slot.key if slot else "?")
            if slot is not None and slot.finish_seq and self._capture is not None:
                self._capture.run_ended(slot)  # e.g. re-attached after its Finish, sent nothing new
            outbox.end()

    def _after_frames(self, slot: RunSlot, metadata_pid: int | None) -> None:
        """After a batch and its ack: a Finish ends the run's sampling (its last window;
        idempotent), and the first batch after init()'s ack begins the metadata capture."""
        if self._capture is None:
            return
        if slot.finish_seq:
            self._capture.run_ended(slot)
        if metadata_pid is not None:
            self._capture.begin_metadata(slot, metadata_pid)

    def _ack_due(self, asked: bool, error: str, acked_error: str, acked_at: float) -> bool:
        """Whether a batch's ack goes out now: asked for (or a Finish), a change of the write error
        (the disk refused, or takes frames again: the client resends on an error and stops warning
        without one), or a held ack about ``ack_interval`` old."""
        return asked or error != acked_error or self._clock() - acked_at >= self._ack_interval

    def Status(
        self, request: daemon_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> daemon_pb2.StatusResponse:
        return self._status()

    def ProbeRun(
        self, request: daemon_pb2.ProbeRunRequest, context: grpc.ServicerContext
    ) -> daemon_pb2.ProbeRunResponse:
        if self._probe is None:
            return daemon_pb2.ProbeRunResponse(reached=False, error="this daemon cannot reach a store")
        return self._probe(request)

    def Shutdown(
        self, request: daemon_pb2.ShutdownRequest, context: grpc.ServicerContext
    ) -> daemon_pb2.ShutdownResponse:
        self._shutdown()
        return daemon_pb2.ShutdownResponse()
