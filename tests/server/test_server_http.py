"""The HTTP endpoint: run pages (escaped), the JSON API, lists, and errors."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import json_format

from tracklog.v1 import store_pb2, store_pb2_grpc
from tracklog_server import RunKey, StoreServer

from .helpers import (
    STDERR,
    STDOUT,
    RunWriter,
    file_records,
    history_record,
    metadata_record,
    output_record,
    start_record,
    system_record,
    timing_record,
)


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


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def captured_run(server: StoreServer, key: RunKey) -> None:
    metadata = {
        "os": "Linux-6.1.0 " + HOSTILE,
        "python": {"implementation": "CPython", "version": "3.12.1"},
        "host": "gpu-box-7",
        "git": {
            "remote": "https://example.invalid/team/repo.git",
            "branch": "feature/<b>x</b>",
            "commit": "0123456789abcdef",
            "dirty": True,
        },
    }
    lines = [(1_700_000_000.0 + i, STDOUT, f"step {i}") for i in range(250)]
    lines.append((1_700_000_300.0, STDERR, "Traceback: " + HOSTILE))
    server.store.ingest(
        key,
        RunWriter(key).frames(
            start_record(key, name="captured"),
            metadata_record(metadata),
            system_record(
                [1_700_000_000.0, 1_700_000_010.0], {"system/cpu": [12.5, 37.25], HOSTILE: [1.0, 2.0]}
            ),
            output_record(lines),
            *file_records("output.log", 1, b"step 0\nstep 1\n"),
            *file_records('nested/dir/a "quoted";name.txt', 1, b"quoted"),
            *file_records("r\u00e9sum\u00e9 <img src=x>.txt", 1, "caf\u00e9".encode()),
            *file_records("partial.bin", 1, b"0123456789", chunk=4)[:1],
            timing_record(3725.0, 1800.0),
        ),
    )


def test_the_run_page_shows_metadata_system_metrics_console_and_files_escaped(server: StoreServer) -> None:
    key = RunKey("alice", "mnist", "cap1")
    captured_run(server, key)
    status, _, body = get(f"{server.http_url}/alice/mnist/runs/cap1")
    assert status == 200
    for text in ("gpu-box-7", "CPython 3.12.1", "0123456789abcdef", "https://example.invalid/team/repo.git"):
        assert text in body
    assert "feature/&lt;b&gt;x&lt;/b&gt;" in body
    assert "1h 02m 05s" in body  # runtime
    assert "0.50" in body  # tracked hours
    assert "system/cpu" in body
    assert "37.25" in body
    assert "step 249" in body
    assert "step 49<" not in body  # only the last 200 lines
    assert "the last 200 of 251 lines" in body
    assert "<span class='err'>Traceback: &lt;script&gt;" in body
    assert "/alice/mnist/runs/cap1/files/output.log" in body
    assert "/alice/mnist/runs/cap1/files/nested/dir/a%20%22quoted%22%3Bname.txt" in body
    assert "partial.bin (incomplete)" in body
    assert "/files/partial.bin" not in body
    for raw in ("<script>", "<img", "<b>x"):
        assert raw not in body


def test_a_file_downloads_as_an_attachment_with_its_exact_bytes(server: StoreServer) -> None:
    key = RunKey("alice", "mnist", "cap2")
    captured_run(server, key)
    base = f"{server.http_url}/alice/mnist/runs/cap2/files"
    status, headers, data = fetch(f"{base}/output.log")
    assert (status, data) == (200, b"step 0\nstep 1\n")
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Length"] == str(len(data))
    assert (
        headers["Content-Disposition"] == "attachment; filename=\"output.log\"; filename*=UTF-8''output.log"
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, data = fetch(f"{base}/nested/dir/a%20%22quoted%22%3Bname.txt")
    assert (status, data) == (200, b"quoted")
    assert headers["Content-Disposition"] == (
        "attachment; filename=\"a__quoted__name.txt\"; filename*=UTF-8''a%20%22quoted%22%3Bname.txt"
    )
    status, headers, data = fetch(f"{base}/r%C3%A9sum%C3%A9%20%3Cimg%20src%3Dx%3E.txt")
    assert (status, data) == (200, "caf\u00e9".encode())
    disposition = headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="r_sum___img_src_x_.txt"; ')
    assert disposition.endswith("filename*=UTF-8''r%C3%A9sum%C3%A9%20%3Cimg%20src%3Dx%3E.txt")


def test_missing_incomplete_and_unsafe_file_paths_are_404(server: StoreServer) -> None:
    key = RunKey("alice", "mnist", "cap3")
    captured_run(server, key)
    base = f"{server.http_url}/alice/mnist/runs/cap3/files"
    for path, message in (
        ("partial.bin", "has no complete version yet"),
        ("nope.txt", "has no file"),
        ("%2E%2E/%2E%2E/etc/passwd", "'..' part"),
    ):
        status, _, body = get(f"{base}/{path}")
        assert status == 404
        assert message in body.replace("&#x27;", "'")
    assert get(f"{server.http_url}/alice/mnist/runs/missing/files/output.log")[0] == 404


# -- a server whose pages need a token (the daemon's embedded store) ---------------------------------

TOKEN = "0123456789abcdef" * 3


@pytest.fixture
def private(db_url: str) -> Iterator[StoreServer]:
    srv = StoreServer(db_url, port=0, http_port=0, http_token=TOKEN)
    srv.start()
    key = RunKey("alice", "mnist", "priv1")
    srv.store.ingest(key, RunWriter(key).frames(start_record(key, name="secret-run-1")))
    yield srv
    srv.stop(grace=1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the test looks at the redirect itself


def _raw(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read().decode()


PRIVATE_PATHS = ["/", "/alice/mnist", "/alice/mnist/runs/priv1", "/api/runs/alice/mnist/priv1",
                 "/alice/mnist/runs/priv1/files/output.log", "/no/such/page/at/all"]  # fmt: skip


@pytest.mark.parametrize("path", PRIVATE_PATHS)
def test_a_request_without_the_token_gets_403_and_a_short_text(private: StoreServer, path: str) -> None:
    for headers in (
        {},
        {"Cookie": f"tracklog-token-{private.http_port}=wrong"},
        {"Authorization": "token no"},
    ):
        status, got, body = _raw(private.http_url + path, headers)
        assert status == 403
        assert got["Content-Type"] == "text/plain; charset=utf-8"
        assert "?token=" in body
        assert "secret-run-1" not in body
        assert "priv1" not in body


def test_the_token_in_the_url_sets_an_httponly_cookie_and_redirects_to_the_clean_url(
    private: StoreServer,
) -> None:
    status, headers, _ = _raw(f"{private.http_url}/alice/mnist/runs/priv1?token={TOKEN}")
    assert status == 303
    assert headers["Location"] == "/alice/mnist/runs/priv1"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"tracklog-token-{private.http_port}={TOKEN};")
    assert "HttpOnly" in cookie
    assert "Path=/" in cookie

    status, _, body = _raw(f"{private.http_url}/alice/mnist/runs/priv1", {"Cookie": cookie.split(";")[0]})
    assert status == 200
    assert "secret-run-1" in body
    status, _, body = _raw(
        f"{private.http_url}/api/runs/alice/mnist/priv1", {"Authorization": f"token {TOKEN}"}
    )
    assert status == 200
    assert json.loads(body)["name"] == "secret-run-1"


def test_a_browser_following_the_printed_url_sees_the_page_and_then_every_page(private: StoreServer) -> None:
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with browser.open(f"{private.http_url}/alice/mnist/runs/priv1?token={TOKEN}", timeout=10) as page:
        assert page.status == 200
        assert page.url == f"{private.http_url}/alice/mnist/runs/priv1"  # the token left the address bar
        assert "secret-run-1" in page.read().decode()
    with browser.open(f"{private.http_url}/alice/mnist", timeout=10) as page:
        assert "secret-run-1" in page.read().decode()


def test_a_wrong_token_in_the_url_gets_403_and_no_cookie(private: StoreServer) -> None:
    for wrong in ("", TOKEN[:-1], TOKEN + "0", TOKEN.upper(), "x" * 1000):
        status, headers, _ = _raw(f"{private.http_url}/?token={wrong}")
        assert status == 403
        assert "Set-Cookie" not in headers


def test_the_redirect_keeps_other_query_parameters_and_never_leaves_the_site(private: StoreServer) -> None:
    status, headers, _ = _raw(f"{private.http_url}//evil.example/x?a=1&token={TOKEN}&b=2")
    assert status == 303
    assert headers["Location"] == "/evil.example/x?a=1&b=2"


def test_server_info_gives_the_http_address_with_its_token(private: StoreServer) -> None:
    assert private.http_link == f"{private.http_url}/?token={TOKEN}"
    with grpc.insecure_channel(private.grpc_address) as channel:
        info = store_pb2_grpc.StoreStub(channel).ServerInfo(store_pb2.ServerInfoRequest(), timeout=10)
    assert info.http_url == private.http_link
