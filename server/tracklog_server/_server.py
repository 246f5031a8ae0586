"""The store server: the gRPC service, the HTTP endpoint and the crash detector on one store.

Start-up order: migrate the schema (in the store's constructor), bind the gRPC port, bind the HTTP
port, then start serving and detecting. Binding both before serving means a busy port fails start()
before anything is visible. stop() reverses it and closes the database engine.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import grpc

import tracklog

from ._crash import CrashDetector
from ._errors import InvalidInputError
from ._http import HttpEndpoint
from ._limits import MAX_MESSAGE_BYTES
from ._service import StoreService
from ._sql_store import Clock, SqlAlchemyStore
from ._store import AbstractStore

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_TIMEOUT = 120.0
_GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class StoreServer:
    """A running store server.

    >>> srv = StoreServer("sqlite:///store.db", port=0, http_port=0)  # doctest: +SKIP
    >>> srv.start(); srv.grpc_address, srv.http_url; srv.stop()       # doctest: +SKIP

    ``http_port`` None disables HTTP; 0 picks a free port (as ``port`` 0 does for gRPC). ``clock`` and
    ``crash_check_interval`` are seams for tests; a non-loopback ``host`` needs ``allow_remote``.
    """

    def __init__(
        self,
        db_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        http_port: int | None = 0,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        clock: Clock = time.time,
        crash_check_interval: float | None = None,
        allow_remote: bool = False,
        max_workers: int = 16,
        store: AbstractStore | None = None,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise InvalidInputError(
                f"refusing to listen on non-loopback address {host!r}: the server has no authentication "
                "yet (pass allow_remote / --insecure-allow-remote to do it anyway)"
            )
        if heartbeat_timeout <= 0:
            raise InvalidInputError("heartbeat timeout must be positive")
        self.host = host
        self._port = port
        self._http_port = http_port
        self.heartbeat_timeout = heartbeat_timeout
        self._max_workers = max_workers
        self.store: AbstractStore = store if store is not None else SqlAlchemyStore(db_url, clock=clock)
        self._detector = CrashDetector(self.store, heartbeat_timeout, crash_check_interval)
        self._grpc: grpc.Server | None = None
        self._http: HttpEndpoint | None = None
        self.grpc_port = 0
        self.http_port = 0

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC listener (valid after start())."""
        return _hostport(self.host, self.grpc_port)

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP endpoint, e.g. ``http://127.0.0.1:7071``; empty when disabled."""
        return f"http://{_hostport(self.host, self.http_port)}" if self._http is not None else ""

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop(grace=0)
            raise

    def _start(self) -> None:
        service = StoreService(
            self.store,
            version=tracklog.__version__,
            http_url=lambda: self.http_url,
            heartbeat_timeout=self.heartbeat_timeout,
        )
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="tracklog-grpc"),
            handlers=[service.handler()],
            options=_GRPC_OPTIONS,
        )
        self._grpc = server
        try:
            bound = server.add_insecure_port(_hostport(self.host, self._port))
        except RuntimeError as exc:  # recent grpcio raises instead of returning 0
            raise OSError(f"cannot listen on {_hostport(self.host, self._port)}: {exc}") from exc
        if not bound:
            raise OSError(f"cannot listen on {_hostport(self.host, self._port)} (address in use?)")
        self.grpc_port = bound
        if self._http_port is not None:
            try:
                self._http = HttpEndpoint(self.store, self.host, self._http_port)
            except OSError as exc:
                where = _hostport(self.host, self._http_port)
                raise OSError(f"cannot listen for HTTP on {where}: {exc.strerror or exc}") from exc
            self.http_port = self._http.port
        server.start()
        if self._http is not None:
            self._http.start()
        self._detector.start()
        log.debug("serving gRPC on %s, HTTP on %s", self.grpc_address, self.http_url or "(disabled)")

    def stop(self, grace: float = 5.0) -> None:
        """Stops serving (in-flight RPCs get ``grace`` seconds), then closes the database."""
        self._detector.stop()
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
            self._grpc = None
        if self._http is not None:
            self._http.stop()
            self._http = None
        self.store.close()

    def __enter__(self) -> StoreServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
