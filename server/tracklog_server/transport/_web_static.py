"""The single-page app's files: ``index.html`` for every page route, hashed assets cached for a year.

The app is built into ``webapp/`` beside this module (package data: ``pip install`` ships it). Its pages
are client-side routes (``/``, ``/<entity>/<project>``, ``/<entity>/<project>/runs/<id>``), so every
path outside ``/api/`` and ``/assets/`` gets ``index.html``; ``/<entity>/<project>/<id>`` (wandb's short
form) redirects to the ``runs/`` form. Assets' names carry their content hash, so they are immutable;
``index.html`` is revalidated every time, so a new build is picked up at once. Without a build, pages
say so (and point at the JSON API) rather than fail.

Pages and assets answer HEAD as GET does (without the body): link checkers and ``curl -I`` use it.

Pages may not be framed by another site (``frame-ancestors 'none'``): a framed page with a Stop or
Delete button invites clickjacking.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from tracklog_server._errors import NotFoundError

WEBAPP_DIR = Path(__file__).with_name("webapp")
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}
_ASSET_HEADERS = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
NOT_BUILT = """<!doctype html><html><head><meta charset="utf-8"><title>tracklog</title></head><body>
<h1>tracklog</h1><p>The web app is not built in this installation, so there are no pages to show.
The JSON API answers under <a href="/api/v1/projects">/api/v1/</a> (its schema:
<a href="/api/v1/openapi.json">/api/v1/openapi.json</a>).</p></body></html>
"""


def static_router(webapp: Path = WEBAPP_DIR) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    root = webapp.resolve()

    def index() -> Response:
        page = root / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)
        return HTMLResponse(NOT_BUILT, headers=_PAGE_HEADERS)

    @router.api_route("/assets/{name:path}", methods=["GET", "HEAD"])
    def asset(name: str) -> Response:
        path = (root / "assets" / name).resolve()
        if not path.is_relative_to(root / "assets") or not path.is_file():
            raise NotFoundError(f"no asset {name!r}")
        return FileResponse(path, headers=_ASSET_HEADERS)

    # HEAD as well: a HEAD of an API path must not fall through to the page routes below (which
    # would answer it with the app's index.html). The API answers GET, not HEAD: 405.
    @router.api_route("/api/{rest:path}", methods=["GET", "HEAD"])
    def unknown_api(rest: str, request: Request) -> Response:
        if request.method == "HEAD":
            raise HTTPException(405, "the API does not answer HEAD; use GET", headers={"Allow": "GET"})
        raise NotFoundError(f"no API route /api/{rest}")

    @router.api_route("/{entity}/{project}/{run_id}", methods=["GET", "HEAD"])
    def short_run_url(entity: str, project: str, run_id: str, request: Request) -> Response:
        path = f"/{quote(entity, safe='')}/{quote(project, safe='')}/runs/{quote(run_id, safe='')}"
        query = request.url.query
        return RedirectResponse(path + (f"?{query}" if query else ""), status_code=308)

    @router.api_route("/{path:path}", methods=["GET", "HEAD"])
    def page(path: str) -> Response:
        top = (root / path).resolve()
        if (
            path
            and "/" not in path
            and top.is_relative_to(root)
            and top.is_file()
            and top.name != "index.html"
        ):
            return FileResponse(
                top, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
            )
        return index()

    return router
