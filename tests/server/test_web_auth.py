"""Who may use the web app: the embedded store's token (URL, then an HttpOnly cookie), and no mutation
from another site, with or without a token."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest

from tracklog.v1 import store_pb2, store_pb2_grpc
from tracklog_server import RunKey, StoreServer

from .helpers import RunWriter, start_record
from .web import Web

TOKEN = "0123456789abcdef" * 3


@pytest.fixture
def private(tmp_path: object, db_url: str) -> Iterator[StoreServer]:
    srv = StoreServer(db_url, port=0, http_port=0, http_token=TOKEN)
    srv.start()
    key = RunKey("alice", "mnist", "priv1")
    srv.store.ingest(key, RunWriter(key).frames(start_record(key, name="secret-run-1")))
    yield srv
    srv.stop(grace=1)


@pytest.fixture
def open_server(db_url: str) -> Iterator[StoreServer]:
    srv = StoreServer(db_url, port=0, http_port=0)
    srv.start()
    key = RunKey("alice", "mnist", "pub1")
    srv.store.ingest(key, RunWriter(key).frames(start_record(key, name="public-run")))
    yield srv
    srv.stop(grace=1)


PRIVATE_PATHS = ["/", "/alice/mnist", "/alice/mnist/runs/priv1", "/api/v1/runs/alice/mnist/priv1",
                 "/api/v1/runs/alice/mnist/priv1/files/output.log", "/api/v1/projects",
                 "/api/v1/openapi.json", "/no/such/page/at/all"]  # fmt: skip


@pytest.mark.parametrize("path", PRIVATE_PATHS)
def test_a_request_without_the_token_gets_403_and_a_short_message(private: StoreServer, path: str) -> None:
    web = Web(private.http_url)
    for headers in (
        {},
        {"Cookie": f"tracklog-token-{private.http_port}=wrong"},
        {"Cookie": "malformed;;=;"},
        {"Authorization": "token no"},
    ):
        reply = web.get(path, headers)
        assert reply.status == 403
        if path.startswith("/api/"):
            assert "?token=" in reply.json["error"]
        else:
            assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert "?token=" in reply.text
        assert b"secret-run-1" not in reply.body
        assert b"priv1" not in reply.body
    web.close()


def test_the_token_in_the_url_sets_an_httponly_cookie_and_redirects_to_the_clean_url(
    private: StoreServer,
) -> None:
    web = Web(private.http_url)
    reply = web.get(f"/alice/mnist/runs/priv1?token={TOKEN}")
    assert reply.status == 303
    assert reply.headers["Location"] == "/alice/mnist/runs/priv1"
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith(f"tracklog-token-{private.http_port}={TOKEN};")
    assert "HttpOnly" in cookie
    assert "Path=/" in cookie
    assert "SameSite=Lax" in cookie
    web.headers["Cookie"] = cookie.split(";")[0]
    assert web.ok("/api/v1/runs/alice/mnist/priv1")["name"] == "secret-run-1"
    assert web.get("/alice/mnist/runs/priv1").status == 200
    other = Web(private.http_url, {"Authorization": f"token {TOKEN}"})
    assert other.ok("/api/v1/runs/alice/mnist/priv1")["name"] == "secret-run-1"
    web.close()
    other.close()


def test_a_browser_following_the_printed_url_reaches_the_page_and_then_the_api(private: StoreServer) -> None:
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with browser.open(f"{private.http_url}/alice/mnist/runs/priv1?token={TOKEN}", timeout=10) as page:
        assert page.status == 200
        assert page.url == f"{private.http_url}/alice/mnist/runs/priv1"  # the token left the address bar
    with browser.open(f"{private.http_url}/api/v1/projects/alice/mnist/runs", timeout=10) as page:
        assert [r["name"] for r in json.loads(page.read())["runs"]] == ["secret-run-1"]


def test_a_wrong_token_in_the_url_gets_403_and_no_cookie(private: StoreServer) -> None:
    web = Web(private.http_url)
    for wrong in ("", TOKEN[:-1], TOKEN + "0", TOKEN.upper(), "x" * 1000):
        reply = web.get(f"/?token={wrong}")
        assert reply.status == 403
        assert "Set-Cookie" not in reply.headers
    web.close()


def test_the_redirect_keeps_other_query_parameters_and_never_leaves_the_site(private: StoreServer) -> None:
    web = Web(private.http_url)
    reply = web.get(f"//evil.example/x?a=1&token={TOKEN}&b=2")
    assert reply.status == 303
    assert reply.headers["Location"] == "/evil.example/x?a=1&b=2"
    web.close()


def test_server_info_gives_the_http_address_with_its_token(private: StoreServer) -> None:
    assert private.http_link == f"{private.http_url}/?token={TOKEN}"
    with grpc.insecure_channel(private.grpc_address) as channel:
        info = store_pb2_grpc.StoreStub(channel).ServerInfo(store_pb2.ServerInfoRequest(), timeout=10)
    assert info.http_url == private.http_link


CROSS_SITE = [
    ({}, "X-Tracklog-Request: 1 is missing"),
    ({"X-Tracklog-Request": "yes"}, "X-Tracklog-Request: 1 is missing"),
    ({"X-Tracklog-Request": "1", "Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site is cross-site"),
    ({"X-Tracklog-Request": "1", "Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site is same-site"),
    ({"X-Tracklog-Request": "1", "Origin": "http://evil.example"}, "Origin http://evil.example"),
    ({"X-Tracklog-Request": "1", "Origin": "null"}, "Origin null"),
]


@pytest.mark.parametrize(("headers", "why"), CROSS_SITE)
def test_every_mutation_refuses_a_cross_site_request_and_changes_nothing(
    private: StoreServer, open_server: StoreServer, headers: dict[str, str], why: str
) -> None:
    for server, run_id, auth in (
        (private, "priv1", {"Authorization": f"token {TOKEN}"}),
        (open_server, "pub1", {}),
    ):
        web = Web(server.http_url, auth)
        run = f"/api/v1/runs/alice/mnist/{run_id}"
        for method, path, body in (
            ("PATCH", run, {"name": "hijacked"}),
            ("POST", f"{run}/stop", None),
            ("DELETE", run, None),
            ("POST", "/api/v1/projects/alice/mnist/runs/bulk", {"ids": [run_id], "action": "delete"}),
        ):
            reply = web.request(method, path, body, headers)
            assert reply.status == 403, (method, path)
            assert why in reply.json["error"]
        run_now = web.ok(run)
        assert run_now["state"] == "running"
        assert run_now["name"] != "hijacked"
        web.close()


def test_a_same_origin_mutation_from_the_app_is_accepted(private: StoreServer) -> None:
    web = Web(private.http_url, {"Authorization": f"token {TOKEN}"})
    origin = private.http_url
    reply = web.send(
        "PATCH",
        "/api/v1/runs/alice/mnist/priv1",
        {"notes": "from the app"},
        {"Origin": origin, "Sec-Fetch-Site": "same-origin"},
    )
    assert reply.status == 200, reply.body
    assert reply.json["notes"] == "from the app"
    web.close()


def test_a_cross_site_form_post_cannot_even_reach_the_json_body_parser(open_server: StoreServer) -> None:
    request = urllib.request.Request(
        f"{open_server.http_url}/api/v1/runs/alice/mnist/pub1/stop",
        data=b"a=1",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    with refused.value as response:
        assert response.code == 403
        assert "cross-site request refused" in json.loads(response.read())["error"]


REBOUND_HOSTS = ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "", "[2001:db8::1]:7007",
                 "[::1]evil.example", "localhost:evil", "localhost.evil.example"]  # fmt: skip


@pytest.mark.parametrize("host", REBOUND_HOSTS)
def test_a_loopback_store_refuses_a_host_name_that_is_not_the_loopback_so_dns_rebinding_reads_nothing(
    open_server: StoreServer, host: str
) -> None:
    web = Web(open_server.http_url)
    for method, path in (("GET", "/api/v1/runs/alice/mnist/pub1"), ("GET", "/alice/mnist"),
                         ("POST", "/api/v1/runs/alice/mnist/pub1/stop")):  # fmt: skip
        reply = web.request(method, path, None, {"Host": host, "X-Tracklog-Request": "1"})
        assert reply.status == 403, (host, method, path)
        assert b"public-run" not in reply.body
        assert b"loopback" in reply.body
    assert web.ok("/api/v1/runs/alice/mnist/pub1")["state"] == "running"
    web.close()


@pytest.mark.parametrize("host", ["localhost", "localhost:7007", "127.0.0.1:7007", "[::1]:7007", "LOCALHOST"])
def test_a_loopback_store_answers_every_loopback_name_on_any_port(
    open_server: StoreServer, host: str
) -> None:
    web = Web(open_server.http_url)
    reply = web.request("GET", "/api/v1/runs/alice/mnist/pub1", None, {"Host": host})
    assert reply.status == 200, reply.body
    assert reply.json["name"] == "public-run"
    web.close()


def test_a_store_listening_on_all_interfaces_answers_any_host_name(db_url: str) -> None:
    srv = StoreServer(db_url, host="0.0.0.0", port=0, http_port=0, allow_remote=True)
    srv.start()
    try:
        key = RunKey("alice", "mnist", "team1")
        srv.store.ingest(key, RunWriter(key).frames(start_record(key, name="team-run")))
        web = Web(f"http://127.0.0.1:{srv.http_port}")
        reply = web.request("GET", "/api/v1/runs/alice/mnist/team1", None, {"Host": "tracker.team.example"})
        assert reply.status == 200, reply.body
        assert reply.json["name"] == "team-run"
        web.close()
    finally:
        srv.stop(grace=1)


def test_a_reverse_proxys_name_is_answered_when_allowed_and_only_then(db_url: str) -> None:
    srv = StoreServer(db_url, port=0, http_port=0, http_allowed_hosts=["Tracker.Example.ORG"])
    srv.start()
    try:
        key = RunKey("alice", "mnist", "proxied")
        srv.store.ingest(key, RunWriter(key).frames(start_record(key, name="behind-nginx")))
        web = Web(srv.http_url)
        path = "/api/v1/runs/alice/mnist/proxied"
        allowed = web.request("GET", path, None, {"Host": "tracker.example.org"})
        assert allowed.status == 200, allowed.body
        assert allowed.json["name"] == "behind-nginx"
        other = web.request("GET", path, None, {"Host": "tracker.example.org.evil.example"})
        assert other.status == 403
        assert b"--http-allowed-host" in other.body
        web.close()
    finally:
        srv.stop(grace=1)
