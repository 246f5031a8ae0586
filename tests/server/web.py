"""A small HTTP client for the web API tests: real requests over real sockets (http.client), the
response's status, headers and body, and JSON helpers. Mutations carry the header the cross-site
guard asks for unless a test leaves it out."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MUTATION = {"X-Tracklog-Request": "1"}


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self) -> Any:
        assert self.headers.get("Content-Type", "").startswith("application/json"), self.headers
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class Web:
    """Requests to one server; ``headers`` go with every request (a cookie, say). One connection is
    kept and reused (HTTP/1.1 keep-alive), reopened when the server closed it."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        url = urlsplit(base)
        assert url.hostname is not None
        assert url.port is not None
        self.host, self.port = url.hostname, url.port
        self.headers = dict(headers or {})
        self.conn: http.client.HTTPConnection | None = None
        self.connections = 0

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Reply:
        sent = {**self.headers, **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.connections += 1
            try:
                self.conn.request(method, path, body=data, headers=sent)
                response = self.conn.getresponse()
                reply = Reply(response.status, response.headers, response.read())
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.will_close:
                self.close()
            return reply
        raise AssertionError("unreachable")

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def ok(self, path: str) -> Any:
        reply = self.get(path)
        assert reply.status == 200, (reply.status, reply.body[:500])
        return reply.json

    def send(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        return self.request(method, path, body, {**MUTATION, **(headers or {})})

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
