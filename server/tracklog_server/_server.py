"""The store server: the gRPC service, the HTTP endpoint, the crash detector and the upkeep (the
planner's statistics) on one store.

Start-up order: migrate the schema (in the store's constructor), bind the gRPC port, bind the HTTP
port, then start serving, detecting and upkeep. Binding both before serving means a busy port fails start()
before anything is visible. stop() reverses it and closes the database engine.

A server that is its user's alone (the daemon's embedded store) takes ``unix_socket``: gRPC then
listens on that socket, mode 0600, instead of a TCP port, and ``http_token``: every HTTP request must
carry the token (see ``transport._web_auth``). A standalone server keeps TCP and open pages unless
told otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import grpc

import tracklog
from tracklog._launch import unix_answers

from ._errors import InvalidInputError
from ._limits import MAX_MESSAGE_BYTES
from .application._crash import CrashDetector
from .application._ingest import IngestGate
from .application._upkeep import Upkeep
from .storage._sql_store import Clock, SqlAlchemyStore
from .storage._store import AbstractStore
from .transport._grpc import StoreService
from .transport._web_auth import is_loopback
from .transport._web_server import WebServer

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_TIMEOUT = 120.0
_GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
]


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class StoreServer:
    """A running store server.

    >>> srv = StoreServer("sqlite:///store.db", port=0, http_port=0)  # doctest: +SKIP
    >>> srv.start(); srv.grpc_address, srv.http_url; srv.stop()       # doctest: +SKIP

    ``http_port`` None disables HTTP; 0 picks a free port (as ``port`` 0 does for gRPC). ``clock`` and
    ``crash_check_interval`` are seams for tests; a non-loopback ``host`` needs ``allow_remote``.
    ``unix_socket`` puts gRPC on that path (0600) instead of ``host:port``; ``http_token`` makes every
    HTTP request need the token (``http_link`` is the base URL that carries it).
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
        unix_socket: Path | None = None,
        http_token: str | None = None,
        http_allowed_hosts: Sequence[str] = (),
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise InvalidInputError(
                f"refusing to listen on non-loopback address {host!r}: the server has no authentication "
                "yet (pass allow_remote / --insecure-allow-remote to do it anyway)"
            )
        if heartbeat_timeout <= 0:
            raise InvalidInputError("heartbeat timeout must be positive")
        if http_token is not None and len(http_token) < 16:
            raise InvalidInputError("an HTTP token must be at least 16 characters")
        self.unix_socket = Path(unix_socket).absolute() if unix_socket is not None else None
        self._http_allowed_hosts = tuple(h.strip().lower() for h in http_allowed_hosts if h.strip())
        self.http_token = http_token
        self._socket_inode: int | None = None
        self.host = host
        self._port = port
        self._http_port = http_port
        self.heartbeat_timeout = heartbeat_timeout
        self._max_workers = max_workers
        self.store: AbstractStore = store if store is not None else SqlAlchemyStore(db_url, clock=clock)
        self._detector = CrashDetector(self.store, heartbeat_timeout, crash_check_interval)
        self.upkeep = Upkeep(self.store)
        self._grpc: grpc.Server | None = None
        self._http: WebServer | None = None
        self.grpc_port = 0
        self.http_port = 0

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC listener, or ``unix:PATH`` (valid after start())."""
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        return _hostport(self.host, self.grpc_port)

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP endpoint, e.g. ``http://127.0.0.1:7071``; empty when disabled."""
        return f"http://{_hostport(self.host, self.http_port)}" if self._http is not None else ""

    @property
    def http_link(self) -> str:
        """``http_url`` with the token as its query when pages need one: what ServerInfo tells the
        daemon and the Api, so the run URLs they print open (only this user can ask the unix
        socket; a TCP server with a token tells any caller, who can read every run over gRPC anyway)."""
        base = self.http_url
        return f"{base}/?token={self.http_token}" if base and self.http_token else base

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
            http_url=lambda: self.http_link,
            heartbeat_timeout=self.heartbeat_timeout,
            gate=IngestGate.for_threads(self._max_workers),
        )
        server = grpc.server(
            ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="tracklog-grpc"),
            handlers=[service.handler()],
            options=_GRPC_OPTIONS,
        )
        self._grpc = server
        if self.unix_socket is not None:
            self._bind_unix(server, self.unix_socket)
        else:
            self.grpc_port = _bind(server, _hostport(self.host, self._port))
        if self._http_port is not None:
            try:
                self._http = WebServer(
                    self.store,
                    self.host,
                    self._http_port,
                    token=self.http_token,
                    allowed_hosts=self._http_allowed_hosts,
                )
            except OSError as exc:
                where = _hostport(self.host, self._http_port)
                raise OSError(f"cannot listen for HTTP on {where}: {exc.strerror or exc}") from exc
            self.http_port = self._http.port
        server.start()
        if self._http is not None:
            self._http.start()
        self._detector.start()
        self.upkeep.start()
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
        self.upkeep.stop()  # after the RPCs: a pass waiting for a write turn gets it
        self._remove_socket()
        self.store.close()

    def _bind_unix(self, server: grpc.Server, path: Path) -> None:
        """Listens on ``path``, a socket only this user may connect to (0600 from its creation: the
        umask covers the moment between bind and chmod). grpc replaces whatever file is at the path,
        so a socket that still answers is refused first: it belongs to a running server."""
        if unix_answers(path):
            raise OSError(f"cannot listen on {path}: another server answers there")
        old = os.umask(0o177)  # only during start(), before any thread of ours creates files
        try:
            _bind(server, f"unix:{path}")
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._socket_inode = os.lstat(path).st_ino

    def _remove_socket(self) -> None:
        """Removes our socket file, unless another server has replaced it since."""
        inode, self._socket_inode = self._socket_inode, None
        if inode is None or self.unix_socket is None:
            return
        with contextlib.suppress(OSError):
            st = os.lstat(self.unix_socket)
            if stat.S_ISSOCK(st.st_mode) and st.st_ino == inode:
                self.unix_socket.unlink()

    def __enter__(self) -> StoreServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _bind(server: grpc.Server, address: str) -> int:
    """Adds the listener at ``address`` (``host:port`` or ``unix:PATH``); returns the bound port."""
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # recent grpcio raises instead of returning 0
        raise OSError(f"cannot listen on {address}: {exc}") from exc
    if not bound:
        raise OSError(f"cannot listen on {address} (address in use?)")
    return int(bound)
