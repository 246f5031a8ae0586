"""The web app's HTTP listener: uvicorn serving the ASGI app in a thread of the store server.

The socket is bound and listening in the constructor, so a busy port fails the server's start()
before anything is served, and a connection made right after start() waits in the backlog rather than
being refused. uvicorn brings HTTP/1.1 keep-alive; it is told not to touch the process's logging
(``log_config=None``) nor its signals (it runs outside the main thread, where it never installs
handlers). stop() asks the loop to finish its requests and waits for the thread.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from tracklog_server.storage._store import AbstractStore

from ._web_app import create_app
from ._web_auth import is_loopback
from ._web_static import WEBAPP_DIR

log = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 30  # a browser's page reuses its connection between polls of a live run
STOP_TIMEOUT = 10.0


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Reuse a port whose old connections linger in TIME_WAIT (a restarted server keeps its URL);
        # SO_REUSEADDR on Linux still refuses a port another socket listens on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


class WebServer:
    """The HTTP listener and its serving thread (``start``/``stop``, ``port``)."""

    def __init__(
        self,
        store: AbstractStore,
        host: str,
        port: int,
        *,
        token: str | None = None,
        webapp: Path = WEBAPP_DIR,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self._sock = bind(host, port)
        self.port = int(self._sock.getsockname()[1])
        app = create_app(
            store,
            token=token,
            port=self.port,
            webapp=webapp,
            loopback_only=is_loopback(host),
            allowed_hosts=allowed_hosts,
        )
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            server_header=False,
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="tracklog-web", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except Exception:  # never silent: the pages stop answering, and the log says why
            log.exception("the web server stopped on an error")

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(STOP_TIMEOUT)
        self._sock.close()
