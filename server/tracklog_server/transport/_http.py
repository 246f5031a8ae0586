"""A small HTTP endpoint so the run URL printed by the SDK opens in a browser.

Routes (GET only):
  /                                    recent runs
  /<entity>/<project>                  runs of a project
  /<entity>/<project>/runs/<id>        a run's page: overview and metadata, config, summary, metrics,
                                       latest system metrics, the console's last lines, files
  /<entity>/<project>/runs/<id>/files/<name>   the latest complete version of a file, as an attachment
  /api/runs/<entity>/<project>/<id>    the run as JSON (``tracklog.v1.RunView`` in protobuf's JSON form)

With a token (the daemon's embedded store), every request must prove it knows the token, as Jupyter's
pages do: ``?token=...`` (the URL tracklog prints) sets an HttpOnly cookie and redirects to the same
address without it; later requests carry the cookie (or an ``Authorization: token ...`` header).
Anything else gets 403 and a short text, before any route or store call. The cookie's name holds the
port, because browsers do not separate cookies by port: the stores of several users (or homes) on
127.0.0.1 must not overwrite each other's. (For the same reason the browser also sends the cookie to
any other server on 127.0.0.1 the user visits, as it does Jupyter's: a limit of cookies on loopback.)

Every piece of user text goes through ``html.escape`` (see ``_html``); downloads are served as
``application/octet-stream`` attachments that a browser neither renders nor sniffs. Runs in threads
of the standard library's ``ThreadingHTTPServer``; each store call is its own short session.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import socket
import threading
from http import HTTPStatus, cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from google.protobuf import json_format

from tracklog.v1 import records_pb2
from tracklog_server._entities import RunFilter, RunKey
from tracklog_server._errors import InvalidInputError, NotFoundError, StoreError, StoreUnavailableError
from tracklog_server._records import run_key
from tracklog_server.application._caller import ANONYMOUS
from tracklog_server.application._get import get_run
from tracklog_server.storage._store import AbstractStore

from ._convert import run_view
from ._html import LOG_TAIL_LINES, e, page, run_page, run_table

log = logging.getLogger(__name__)

_LIST_LIMIT = 200
# Characters kept in the plain filename= of a download; the exact name goes in filename*=.
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def _key(entity: str, project: str, run_id: str) -> RunKey:
    return run_key(records_pb2.RunRef(entity=entity, project=project, id=run_id))


def content_disposition(name: str) -> str:
    """An attachment named after the file's last part: a plain ASCII fallback with nothing that could
    end the header value or the quoted string, and the exact name percent-encoded (RFC 6266)."""
    base = name.rsplit("/", 1)[-1]
    fallback = _UNSAFE_FILENAME.sub("_", base).lstrip(".") or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(base, safe='')}"


def _same(given: str, token: str) -> bool:
    """Constant-time comparison: the time taken tells nothing about how much of a guess was right."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "tracklog"

    def log_message(self, format: str, *args: Any) -> None:
        token = self.server.token
        text = format % args
        log.debug("http %s: %s", self.address_string(), text.replace(token, "***") if token else text)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if self.server.token is not None and not self._authorized(url.path, url.query):
            return
        parts = [unquote(p) for p in url.path.split("/") if p]
        try:
            self._route(parts)
        except (NotFoundError, InvalidInputError) as exc:
            self._send(HTTPStatus.NOT_FOUND, page("Not found", f"<p>{e(exc)}</p>"))
        except StoreUnavailableError as exc:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, page("Unavailable", f"<p>{e(exc)}</p>"))
        except StoreError as exc:
            log.error("http: %s", exc, exc_info=exc)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, page("Error", "<p>Internal server error.</p>"))

    def _authorized(self, path: str, query: str) -> bool:
        """True when the request may proceed; otherwise the response (a redirect or 403) is sent."""
        token = self.server.token
        assert token is not None
        params = parse_qsl(query, keep_blank_values=True)
        given = [value for name, value in params if name == "token"]
        if given:
            if not _same(given[-1], token):
                self._forbidden("wrong token")
                return False
            # The token moves into an HttpOnly cookie and out of the address bar (and of history).
            rest = urlencode([(name, value) for name, value in params if name != "token"])
            self.send_response(HTTPStatus.SEE_OTHER)
            cookie = f"{self.server.cookie_name}={token}; Path=/; HttpOnly; SameSite=Lax"
            self.send_header("Set-Cookie", cookie)
            # One leading slash: "//host/..." would send the browser to another site.
            self.send_header("Location", "/" + path.lstrip("/") + (f"?{rest}" if rest else ""))
            self.send_header("Content-Length", "0")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            return False
        header = self.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() in ("token", "bearer") and _same(credential.strip(), token):
            return True
        jar = cookies.SimpleCookie()
        with contextlib.suppress(cookies.CookieError):  # a malformed Cookie header proves nothing
            jar.load(self.headers.get("Cookie", ""))
        morsel = jar.get(self.server.cookie_name)
        if morsel is not None and _same(morsel.value, token):
            return True
        self._forbidden("no token")
        return False

    def _forbidden(self, why: str) -> None:
        body = (
            f"403 Forbidden ({why}): this tracklog store is private to its user. Open the address "
            "tracklog printed, which ends in ?token=...\n"
        ).encode()
        self.send_response(HTTPStatus.FORBIDDEN)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _route(self, parts: list[str]) -> None:
        store = self.server.store
        if len(parts) == 5 and parts[:2] == ["api", "runs"]:
            view = run_view(get_run(store, ANONYMOUS, _key(*parts[2:])))
            text = json_format.MessageToJson(view, preserving_proto_field_name=True)
            self._send(HTTPStatus.OK, text, "application/json")
        elif len(parts) == 4 and parts[2] == "runs":
            self._run_page(_key(parts[0], parts[1], parts[3]))
        elif len(parts) >= 6 and parts[2] == "runs" and parts[4] == "files":
            self._download(_key(parts[0], parts[1], parts[3]), "/".join(parts[5:]))
        elif len(parts) == 2:
            key = _key(parts[0], parts[1], "x")  # validates entity and project
            runs = store.list_runs(RunFilter(entity=key.entity, project=key.project, limit=_LIST_LIMIT))
            title = f"{key.entity}/{key.project}"
            self._send(HTTPStatus.OK, page(title, f"<h1>{e(title)}</h1>{run_table(runs)}"))
        elif not parts:
            runs = store.list_runs(RunFilter(limit=_LIST_LIMIT))
            self._send(HTTPStatus.OK, page("tracklog", f"<h1>Recent runs</h1>{run_table(runs)}"))
        else:
            self._send(HTTPStatus.NOT_FOUND, page("Not found", "<p>No such page.</p>"))

    def _run_page(self, key: RunKey) -> None:
        store = self.server.store
        run = get_run(store, ANONYMOUS, key)
        offset = max(0, run.output_lines - LOG_TAIL_LINES)
        lines = [line for lines in store.logs(key, offset, LOG_TAIL_LINES) for line in lines]
        body = run_page(run, store.latest_system_metrics(key), lines, store.list_files(key))
        self._send(HTTPStatus.OK, body)

    def _download(self, key: RunKey, name: str) -> None:
        info, pieces = self.server.store.read_file(key, name)  # a missing file fails here, as a 404
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(info.size))
        self.send_header("Content-Disposition", content_disposition(info.name))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'none'; sandbox")
        self.end_headers()
        try:
            for piece in pieces:
                self.wfile.write(piece)
        except StoreError as exc:
            # The status is sent: all we can do is cut the response short, which the client sees.
            log.warning("http: download of %r from run %s failed: %s", name, key, exc)
            self.close_connection = True

    def _send(self, status: HTTPStatus, text: str, content_type: str = "text/html; charset=utf-8") -> None:
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.end_headers()
        self.wfile.write(body)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow browser never delays shutdown

    def __init__(self, address: tuple[str, int], store: AbstractStore, token: str | None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.store = store
        self.token = token
        super().__init__(address, _Handler)
        self.cookie_name = f"tracklog-token-{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; keep it in the server's log instead.
        log.exception("http: unexpected error serving %s", client_address)


class HttpEndpoint:
    """The HTTP listener and its serving thread."""

    def __init__(self, store: AbstractStore, host: str, port: int, *, token: str | None = None) -> None:
        self._server = _HttpServer((host, port), store, token)  # binds now: a busy port fails here
        self._thread = threading.Thread(target=self._serve, name="tracklog-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        # The poll interval bounds how long stop() waits for the loop to notice; 10 wake-ups a
        # second cost nothing measurable.
        self._server.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
