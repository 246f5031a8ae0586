"""Talking to store servers: a small client interface (the test seam) and a pool of them by target.

``StoreClient`` is what the sync loop, heartbeats and ``sync_spool`` call; ``GrpcStoreClient`` is the
real one. It translates every grpc.RpcError into StoreUnavailable / StoreRejected (``_retry``), so
nothing above this module sees gRPC errors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import grpc

from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc
from tracklogd._config import GRPC_MESSAGE_OPTIONS
from tracklogd._errors import StoreUnavailable
from tracklogd._retry import translated

INGEST_TIMEOUT = 60.0
SMALL_CALL_TIMEOUT = 5.0

# Reconnect quickly once a server is back: gRPC's default reconnect backoff grows to two minutes,
# during which calls fail at once without trying; ours is capped at two seconds.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    *GRPC_MESSAGE_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class StoreClient(Protocol):
    """The store calls the daemon makes. Implementations raise StoreError subclasses only."""

    def ingest(
        self,
        ref: records_pb2.RunRef,
        frames: Sequence[records_pb2.Frame],
        writer_token: str = "",
        source: store_pb2.Source.ValueType = store_pb2.SOURCE_CLIENT,
    ) -> store_pb2.IngestResponse: ...

    def heartbeat(self, refs: Sequence[records_pb2.RunRef]) -> store_pb2.HeartbeatResponse: ...

    def server_info(self) -> store_pb2.ServerInfoResponse: ...

    def check_run_id(
        self, request: store_pb2.CheckRunIdRequest, timeout: float
    ) -> store_pb2.CheckRunIdResponse: ...

    def close(self) -> None: ...


StoreClientFactory = Callable[[str], StoreClient]


class GrpcStoreClient:
    """A StoreClient over one gRPC channel to ``target`` (``host:port``)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = store_pb2_grpc.StoreStub(self._channel)

    def ingest(
        self,
        ref: records_pb2.RunRef,
        frames: Sequence[records_pb2.Frame],
        writer_token: str = "",
        source: store_pb2.Source.ValueType = store_pb2.SOURCE_CLIENT,
    ) -> store_pb2.IngestResponse:
        request = store_pb2.IngestRequest(ref=ref, frames=frames, writer_token=writer_token, source=source)
        with translated(f"ingest into {self.target}"):
            response: store_pb2.IngestResponse = self._stub.Ingest(request, timeout=INGEST_TIMEOUT)
        return response

    def heartbeat(self, refs: Sequence[records_pb2.RunRef]) -> store_pb2.HeartbeatResponse:
        request = store_pb2.HeartbeatRequest(runs=refs)
        with translated(f"heartbeat to {self.target}"):
            response: store_pb2.HeartbeatResponse = self._stub.Heartbeat(request, timeout=SMALL_CALL_TIMEOUT)
        return response

    def server_info(self) -> store_pb2.ServerInfoResponse:
        with translated(f"server info from {self.target}"):
            response: store_pb2.ServerInfoResponse = self._stub.ServerInfo(
                store_pb2.ServerInfoRequest(), timeout=SMALL_CALL_TIMEOUT
            )
        return response

    def check_run_id(
        self, request: store_pb2.CheckRunIdRequest, timeout: float
    ) -> store_pb2.CheckRunIdResponse:
        with translated(f"check a run id with {self.target}"):
            response: store_pb2.CheckRunIdResponse = self._stub.CheckRunId(request, timeout=timeout)
        return response

    def close(self) -> None:
        self._channel.close()


class StorePool:
    """One client per store target, created on first use, plus each server's cached ServerInfo
    (the run URL needs its http_url, and Attach must never wait for a server to answer)."""

    def __init__(self, factory: StoreClientFactory = GrpcStoreClient) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._clients: dict[str, StoreClient] = {}
        self._info: dict[str, store_pb2.ServerInfoResponse] = {}
        self._closed = False

    def client(self, target: str) -> StoreClient:
        with self._lock:
            client = self._clients.get(target)
            if client is None:
                if self._closed:  # the daemon is stopping: as good as unreachable
                    raise StoreUnavailable(f"not connecting to {target}: tracklogd is stopping")
                client = self._clients[target] = self._factory(target)
            return client

    def info(self, target: str) -> store_pb2.ServerInfoResponse | None:
        """The cached ServerInfo of ``target``, or None if it has not answered yet."""
        with self._lock:
            return self._info.get(target)

    def fetch_info(self, target: str) -> store_pb2.ServerInfoResponse:
        """Asks ``target`` for its ServerInfo and caches it. Raises StoreError."""
        info = self.client(target).server_info()
        with self._lock:
            self._info[target] = info
        return info

    def close(self) -> None:
        """Closes every channel: calls in flight end with CANCELLED (seen as StoreUnavailable)."""
        with self._lock:
            self._closed = True
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
