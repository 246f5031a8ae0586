"""The HTTP endpoint: run pages (escaped), the JSON API, lists, and errors."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from google.protobuf import json_format

from tracklog.v1 import store_pb2
from tracklog_server import RunKey, StoreServer

from .helpers import RunWriter, history_record, start_record


@pytest.fixture
def server(tmp_path: object, db_url: str) -> Iterator[StoreServer]:
    srv = StoreServer(db_url, port=0, http_port=0)
    srv.start()
    yield srv
    srv.stop(grace=1)


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


HOSTILE = "<script>alert('x')</script>"


def test_the_run_page_shows_the_run_and_escapes_user_text(server: StoreServer) -> None:
    key = RunKey("alice", "mnist", "abc123")
    start = start_record(key, name=HOSTILE, notes="a & b", tags=['"><img src=x>'], config={HOSTILE: "<b>"})
    server.store.ingest(key, RunWriter(key).frames(start, history_record([(0, {"<i>loss": 0.5})])))
    status, content_type, body = get(f"{server.http_url}/alice/mnist/runs/abc123")
    assert status == 200
    assert content_type.startswith("text/html")
    assert "<script>" not in body
    assert "<img" not in body
    assert "<b>" not in body
    assert "<i>" not in body
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body
    assert "a &amp; b" in body
    assert "running" in body


def test_the_json_api_returns_the_run_view(server: StoreServer) -> None:
    key = RunKey("alice", "mnist", "j1")
    server.store.ingest(
        key, RunWriter(key).frames(start_record(key, name="n"), history_record([(0, {"x": 1.0})]))
    )
    status, content_type, body = get(f"{server.http_url}/api/runs/alice/mnist/j1")
    assert (status, content_type) == (200, "application/json")
    view = json_format.Parse(body, store_pb2.RunView())
    assert (view.name, view.history_rows, view.ref.id) == ("n", 1, "j1")
    assert json.loads(view.summary_json) == {"x": 1.0}


def test_project_and_index_pages_list_runs(server: StoreServer) -> None:
    key = RunKey("alice", "mnist", "l1")
    server.store.ingest(key, RunWriter(key).frames(start_record(key, name="listed-run")))
    for url in (f"{server.http_url}/", f"{server.http_url}/alice/mnist"):
        status, _, body = get(url)
        assert status == 200
        assert "listed-run" in body
        assert "/alice/mnist/runs/l1" in body


def test_unknown_runs_and_paths_are_404_with_escaped_text(server: StoreServer) -> None:
    status, _, body = get(f"{server.http_url}/alice/mnist/runs/nope")
    assert status == 404
    assert "alice/mnist/nope not found" in body
    status, _, body = get(f"{server.http_url}/alice/mnist/runs/%3Cscript%3E")
    assert status == 404
    assert "<script>" not in body
    assert get(f"{server.http_url}/a/b/c/d/e/f")[0] == 404
