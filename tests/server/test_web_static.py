"""The single-page app's hosting: index.html for every page route, hashed assets cached for a year,
wandb's short run URL redirected, a clear page when the app is not built; never a way out of the
app's folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tracklog_server import SqlAlchemyStore
from tracklog_server.transport._web_server import WebServer

from .web import Web

INDEX = b"<!doctype html><div id=app></div><script src=/assets/app-3f2a.js></script>"


@pytest.fixture
def webapp(tmp_path: Path) -> Path:
    root = tmp_path / "webapp"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "assets" / "app-3f2a.js").write_text("console.log('app')\n" * 100)
    (root / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside the app")
    return root


def serve(store: SqlAlchemyStore, webapp: Path) -> Iterator[Web]:
    server = WebServer(store, "127.0.0.1", 0, webapp=webapp)
    server.start()
    web = Web(f"http://127.0.0.1:{server.port}")
    yield web
    web.close()
    server.stop()


@pytest.fixture
def web(store: SqlAlchemyStore, webapp: Path) -> Iterator[Web]:
    yield from serve(store, webapp)


@pytest.fixture
def unbuilt(store: SqlAlchemyStore, tmp_path: Path) -> Iterator[Web]:
    yield from serve(store, tmp_path / "no-webapp")


@pytest.mark.parametrize(
    "path", ["/", "/alice/mnist", "/alice/mnist/runs/abc123", "/alice/mnist/runs/abc123/logs"]
)
def test_every_page_route_gets_index_html_revalidated_and_never_framed(web: Web, path: str) -> None:
    page = web.get(path)
    assert (page.status, page.body) == (200, INDEX)
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-cache"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


def test_hashed_assets_are_cached_for_a_year_and_gzipped(web: Web) -> None:
    asset = web.get("/assets/app-3f2a.js", {"Accept-Encoding": "gzip"})
    assert asset.status == 200
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert asset.headers["Content-Encoding"] == "gzip"
    assert web.get("/favicon.svg").body == b"<svg/>"


def test_wandbs_short_run_url_redirects_to_the_runs_form_keeping_the_query(web: Web) -> None:
    reply = web.get("/alice/mnist/abc123?tab=logs")
    assert reply.status == 308
    assert reply.headers["Location"] == "/alice/mnist/runs/abc123?tab=logs"


@pytest.mark.parametrize(
    "path", ["/assets/../../secret.txt", "/assets/%2E%2E/%2E%2E/secret.txt", "/assets/missing.js", "/assets/"]
)
def test_nothing_outside_the_apps_assets_is_served(web: Web, path: str) -> None:
    reply = web.get(path)
    assert b"outside the app" not in reply.body
    assert reply.status in (404, 200)
    if reply.status == 200:  # a path the client normalised to a page route gets the app itself
        assert reply.body == INDEX


def test_an_unknown_api_path_is_a_json_404_not_the_app(web: Web) -> None:
    reply = web.get("/api/v2/anything")
    assert reply.status == 404
    assert reply.json == {"error": "no API route /api/v2/anything"}


def test_without_a_build_pages_say_the_app_is_not_built_and_point_at_the_api(unbuilt: Web) -> None:
    page = unbuilt.get("/alice/mnist")
    assert page.status == 200
    assert "The web app is not built" in page.text
    assert "/api/v1/openapi.json" in page.text


@pytest.mark.parametrize("path", ["/", "/alice/mnist/runs/abc123", "/assets/app-3f2a.js", "/favicon.svg"])
def test_head_answers_as_get_does_without_a_body(web: Web, path: str) -> None:
    got = web.get(path)
    head = web.request("HEAD", path)
    assert head.status == 200
    assert head.body == b""
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert head.headers["Cache-Control"] == got.headers["Cache-Control"]


def test_head_on_the_short_run_url_redirects_as_get_does(web: Web) -> None:
    head = web.request("HEAD", "/alice/mnist/abc123")
    assert head.status == 308
    assert head.headers["Location"] == "/alice/mnist/runs/abc123"


@pytest.mark.parametrize(
    "path", ["/api/v1/projects", "/api/v1/runs/a/b/c", "/api/v1/runs/a/b/c/history", "/api/nothing"]
)
def test_head_on_an_api_path_is_refused_never_answered_with_the_app_page(web: Web, path: str) -> None:
    head = web.request("HEAD", path)
    assert head.status == 405
    assert head.headers["Allow"] == "GET"
    assert head.body == b""
