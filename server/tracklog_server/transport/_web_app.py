"""The web app's ASGI application: the JSON API (``/api/v1``, OpenAPI at ``/api/v1/openapi.json``)
and the single-page app's files, behind the token and the cross-site guard (``_web_auth``), with gzip.

Errors are JSON ``{"error": "..."}`` with a 4xx status naming what was wrong: 400 bad input, 403
refused, 404 missing, 409 not in a state that allows it (stopping a finished run), 410 deleted, 503
store unavailable. Anything unexpected is logged here with its traceback and answered 500 with a
short message, never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp

import tracklog
from tracklog_server._errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RunDeletedError,
    RunStateError,
    StoreConflictError,
    StoreError,
    StoreUnavailableError,
)
from tracklog_server.application._runs import ANONYMOUS, Caller
from tracklog_server.storage._store import AbstractStore

from . import _web_routes_charts, _web_routes_projects, _web_routes_runs
from ._web_auth import Guard
from ._web_models import ErrorBody
from ._web_static import WEBAPP_DIR, static_router

log = logging.getLogger(__name__)

OPENAPI_URL = "/api/v1/openapi.json"
# Most specific first: the first match decides the status.
_STATUS: tuple[tuple[type[StoreError], int], ...] = (
    (RunDeletedError, 410),
    (InvalidInputError, 400),
    (NotFoundError, 404),
    (PermissionDeniedError, 403),
    (RunStateError, 409),
    (StoreConflictError, 409),
    (StoreUnavailableError, 503),
)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})


def _store_error(_request: Request, exc: Exception) -> JSONResponse:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return _error(status, str(exc))
    log.error("web: %s", exc, exc_info=exc)
    return _error(500, "internal server error (the server's log has the details)")


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return _error(400, "; ".join(parts) or "invalid request")


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        {"error": str(exc.detail)}, status_code=exc.status_code, headers=dict(exc.headers or {})
    )


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("web: unexpected error", exc_info=exc)
    return _error(500, "internal server error (the server's log has the details)")


def create_api(store: AbstractStore, *, caller: Caller = ANONYMOUS, webapp: Path = WEBAPP_DIR) -> FastAPI:
    """The FastAPI application, unguarded (``create_app`` adds the guard and gzip)."""
    app = FastAPI(
        title="tracklog",
        version=tracklog.__version__,
        summary="Runs, their charts, logs and files, as the web app reads and edits them.",
        openapi_url=OPENAPI_URL,
        docs_url=None,  # the interactive docs load scripts from a CDN; the schema is enough
        redoc_url=None,
        responses={
            400: {"description": "Bad input", "model": ErrorBody},
            403: {"description": "Refused", "model": ErrorBody},
            404: {"description": "Not found", "model": ErrorBody},
        },
    )
    app.state.store = store
    app.state.caller = caller
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(_web_routes_projects.router)
    app.include_router(_web_routes_charts.router)
    app.include_router(_web_routes_runs.router)
    app.include_router(static_router(webapp))
    return app


def create_app(
    store: AbstractStore,
    *,
    token: str | None,
    port: int,
    caller: Caller = ANONYMOUS,
    webapp: Path = WEBAPP_DIR,
    loopback_only: bool = False,
    allowed_hosts: Sequence[str] = (),
) -> ASGIApp:
    """The guarded application a server runs: Host, token and cross-site checks first, then gzip."""
    api = create_api(store, caller=caller, webapp=webapp)
    gzip = GZipMiddleware(api, minimum_size=1024, compresslevel=6)
    return Guard(gzip, token, port, loopback_only=loopback_only, allowed_hosts=allowed_hosts)
