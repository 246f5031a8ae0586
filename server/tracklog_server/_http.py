"""A small HTTP endpoint so the run URL printed by the SDK opens in a browser.

Routes (GET only):
  /                                    recent runs
  /<entity>/<project>                  runs of a project
  /<entity>/<project>/runs/<id>        a run's page: name, state, config, summary, metrics
  /api/runs/<entity>/<project>/<id>    the run as JSON (``tracklog.v1.RunView`` in protobuf's JSON form)

Every piece of user text goes through ``html.escape``. Runs in threads of the standard library's
``ThreadingHTTPServer``; each request is one store operation.
"""

from __future__ import annotations

import html
import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from google.protobuf import json_format

from tracklog.v1 import records_pb2

from ._convert import run_view
from ._entities import Run, RunFilter, RunKey
from ._errors import InvalidInputError, RunNotFoundError, StoreError, StoreUnavailableError
from ._records import run_key
from ._store import AbstractStore

log = logging.getLogger(__name__)

_LIST_LIMIT = 200
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
    "pre{background:#f6f6f6;padding:.8em;overflow:auto}.state{font-weight:bold}"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _key(entity: str, project: str, run_id: str) -> RunKey:
    return run_key(records_pb2.RunRef(entity=entity, project=project, id=run_id))


def _pretty(json_text: str) -> str:
    try:
        return json.dumps(json.loads(json_text), indent=2, sort_keys=True, allow_nan=True)
    except ValueError:
        return json_text


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _run_table(runs: list[Run]) -> str:
    if not runs:
        return "<p>No runs yet.</p>"
    rows = "".join(
        f"<tr><td><a href='/{_e(r.key.entity)}/{_e(r.key.project)}/runs/{_e(r.key.id)}'>{_e(r.name)}</a></td>"
        f"<td>{_e(r.key)}</td><td>{_e(r.state.value)}</td><td>{r.history_rows}</td></tr>"
        for r in runs
    )
    return f"<table><tr><th>name</th><th>path</th><th>state</th><th>rows</th></tr>{rows}</table>"


def run_page(run: Run) -> str:
    metrics = "".join(
        f"<tr><td>{_e(m.key)}</td><td>{_e(m.last)}</td><td>{_e(m.min)}</td><td>{_e(m.max)}</td>"
        f"<td>{m.last_step}</td></tr>"
        for m in run.metrics
    )
    tags = ", ".join(_e(t) for t in run.tags)
    body = (
        f"<h1>{_e(run.name)}</h1>"
        f"<p>{_e(run.key)} &middot; <span class='state'>{_e(run.state.value)}</span>"
        f" &middot; {run.history_rows} rows</p>"
        + (f"<p>Tags: {tags}</p>" if run.tags else "")
        + (f"<p>Notes: {_e(run.notes)}</p>" if run.notes else "")
        + (f"<p>Group: {_e(run.group)}</p>" if run.group else "")
        + (f"<p>Job type: {_e(run.job_type)}</p>" if run.job_type else "")
        + f"<h2>Config</h2><pre>{_e(_pretty(run.config_json))}</pre>"
        + f"<h2>Summary</h2><pre>{_e(_pretty(run.summary_json))}</pre>"
        + (
            "<h2>Metrics</h2><table><tr><th>key</th><th>last</th><th>min</th><th>max</th>"
            f"<th>last step</th></tr>{metrics}</table>"
            if metrics
            else ""
        )
        + f"<p><a href='/api/runs/{_e(run.key.entity)}/{_e(run.key.project)}/{_e(run.key.id)}'>JSON</a></p>"
    )
    return _page(f"{run.name} ({run.key})", body)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "tracklog"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
        try:
            self._route(parts)
        except (RunNotFoundError, InvalidInputError) as exc:
            self._send(HTTPStatus.NOT_FOUND, _page("Not found", f"<p>{_e(exc)}</p>"))
        except StoreUnavailableError as exc:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, _page("Unavailable", f"<p>{_e(exc)}</p>"))
        except StoreError as exc:
            log.error("http: %s", exc, exc_info=exc)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, _page("Error", "<p>Internal server error.</p>"))

    def _route(self, parts: list[str]) -> None:
        store = self.server.store
        if len(parts) == 5 and parts[:2] == ["api", "runs"]:
            view = run_view(store.get_run(_key(*parts[2:])))
            text = json_format.MessageToJson(view, preserving_proto_field_name=True)
            self._send(HTTPStatus.OK, text, "application/json")
        elif len(parts) == 4 and parts[2] == "runs":
            self._send(HTTPStatus.OK, run_page(store.get_run(_key(parts[0], parts[1], parts[3]))))
        elif len(parts) == 2:
            key = _key(parts[0], parts[1], "x")  # validates entity and project
            runs = store.list_runs(RunFilter(entity=key.entity, project=key.project, limit=_LIST_LIMIT))
            title = f"{key.entity}/{key.project}"
            self._send(HTTPStatus.OK, _page(title, f"<h1>{_e(title)}</h1>{_run_table(runs)}"))
        elif not parts:
            runs = store.list_runs(RunFilter(limit=_LIST_LIMIT))
            self._send(HTTPStatus.OK, _page("tracklog", f"<h1>Recent runs</h1>{_run_table(runs)}"))
        else:
            self._send(HTTPStatus.NOT_FOUND, _page("Not found", "<p>No such page.</p>"))

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

    def __init__(self, address: tuple[str, int], store: AbstractStore) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.store = store
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; keep it in the server's log instead.
        log.exception("http: unexpected error serving %s", client_address)


class HttpEndpoint:
    """The HTTP listener and its serving thread."""

    def __init__(self, store: AbstractStore, host: str, port: int) -> None:
        self._server = _HttpServer((host, port), store)  # binds now: a busy port fails here
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
