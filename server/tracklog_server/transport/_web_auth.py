"""Who may use the web app: the store's token, and no mutation from another site.

**The token** (the daemon's embedded store, which is its user's alone). As Jupyter's pages do, every
request must prove it knows the token: ``?token=...`` (the URL tracklog prints) sets an HttpOnly cookie
and redirects to the same address without it; later requests carry the cookie (or an ``Authorization:
token ...`` header). Anything else gets 403 before any route or store call. The cookie's name holds the
port, because browsers do not separate cookies by port: the stores of several users (or homes) on
127.0.0.1 must not overwrite each other's. (For the same reason the browser also sends the cookie to
any other server on 127.0.0.1 the user visits, as it does Jupyter's: a limit of cookies on loopback.)

**Cross-site requests.** A page on another site can make the browser send a form POST (with the
cookie) to this server. Every mutation (any method but GET, HEAD, OPTIONS) therefore needs the header
``X-Tracklog-Request: 1``, which a form cannot send and a script of another site cannot send without a
CORS preflight this server never grants; a ``Sec-Fetch-Site`` other than same-origin/none, or an
``Origin`` other than this server's own, is refused as well. These checks hold with or without a token.

**DNS rebinding.** A server listening on a loopback address answers only requests whose ``Host`` names
the loopback (``localhost``, ``127.0.0.1``, ``[::1]``, any port) or one of ``allowed_hosts`` (the
public name of a reverse proxy in front of it, ``--http-allowed-host``). Otherwise a page of another site
could point its own host name at 127.0.0.1 and then read and edit the runs as a same-origin page:
the browser would send its requests, Origin and all, to this server under the other site's name. A
store listening on all interfaces (a team's server) is reached by names it cannot know, and is
exempt.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
from collections.abc import Sequence
from http import cookies
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REQUEST_HEADER = "x-tracklog-request"


def is_loopback(host: str) -> bool:
    """Whether a listening address is the loopback's: ``localhost`` or a loopback address literal
    (strict: what the server binds to must not depend on a resolver's search domains)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def names_loopback(name: str) -> bool:
    """Whether a ``Host`` header's name (``host_name``) names the loopback as a browser resolves it:
    ``localhost`` and ``*.localhost`` in any case (browsers never ask DNS for them), or a loopback
    address literal. "127.0.0.1.evil.example" is a name another site controls: not loopback."""
    name = name.lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name part of a ``Host`` header: ``[::1]:7007`` -> ``::1``, ``localhost:7007`` ->
    ``localhost``; "" when the header is malformed (``[::1]evil``, a port that is not a number)."""
    header = header.strip()
    if header.startswith("["):
        name, _, rest = header[1:].partition("]")
        return name if rest == "" or (rest.startswith(":") and rest[1:].isdigit()) else ""
    name, colon, port = header.partition(":")
    if colon and not port.isdigit():
        return ""
    return name


def cookie_name(port: int) -> str:
    return f"tracklog-token-{port}"


def same(given: str, token: str) -> bool:
    """Constant-time comparison: the time taken tells nothing about how much of a guess was right."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    base = [
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": base + headers})
    await send({"type": "http.response.body", "body": body})


async def refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    """The error as JSON for the API, as text for pages (a person reads it in the browser)."""
    if scope["path"].startswith("/api/"):
        body = json.dumps({"error": message}).encode()
        content_type = b"application/json"
    else:
        body = f"{status} {message}\n".encode()
        content_type = b"text/plain; charset=utf-8"
    await _respond(send, status, body, [(b"content-type", content_type)])


class Guard:
    """ASGI middleware: the Host check (when ``loopback_only``), the token check (when ``token`` is
    set), then the cross-site check."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        port: int,
        *,
        loopback_only: bool = False,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.token = token
        self.port = port
        self.loopback_only = loopback_only
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.loopback_only:
            name = host_name(Headers(scope=scope).get("host", ""))
            if not names_loopback(name) and name.lower() not in self.allowed_hosts:
                await refuse(
                    scope,
                    send,
                    403,
                    f"Forbidden: this store listens on the loopback only and answers to localhost or "
                    f"127.0.0.1, not to the host name {name!r} (a reverse proxy's name is allowed with "
                    "--http-allowed-host)",
                )
                return
        if self.token is not None and not await self._authorized(scope, send, self.token):
            return
        if scope["method"] not in SAFE_METHODS:
            why = cross_site(scope)
            if why:
                await refuse(scope, send, 403, f"cross-site request refused: {why}")
                return
        await self.app(scope, receive, send)

    async def _authorized(self, scope: Scope, send: Send, token: str) -> bool:
        """True when the request may proceed; otherwise the response (a redirect or 403) is sent."""
        params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [value for name, value in params if name == "token"]
        if given:
            if not same(given[-1], token):
                await refuse(scope, send, 403, _forbidden("wrong token"))
                return False
            # The token moves into an HttpOnly cookie and out of the address bar (and of history).
            rest = urlencode([(name, value) for name, value in params if name != "token"])
            # One leading slash: "//host/..." would send the browser to another site.
            location = "/" + scope["path"].lstrip("/") + (f"?{rest}" if rest else "")
            cookie = f"{cookie_name(self.port)}={token}; Path=/; HttpOnly; SameSite=Lax"
            redirect = [(b"location", location.encode("utf-8")), (b"set-cookie", cookie.encode())]
            await _respond(send, 303, b"", redirect)
            return False
        headers = Headers(scope=scope)
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() in ("token", "bearer") and same(credential.strip(), token):
            return True
        jar: cookies.SimpleCookie = cookies.SimpleCookie()
        with contextlib.suppress(cookies.CookieError):  # a malformed Cookie header proves nothing
            jar.load(headers.get("cookie", ""))
        morsel = jar.get(cookie_name(self.port))
        if morsel is not None and same(morsel.value, token):
            return True
        await refuse(scope, send, 403, _forbidden("no token"))
        return False


def _forbidden(why: str) -> str:
    return (
        f"Forbidden ({why}): this tracklog store is private to its user. Open the address tracklog "
        "printed, which ends in ?token=..."
    )


def cross_site(scope: Scope) -> str:
    """Why a mutation looks cross-site ("" when it does not)."""
    headers = Headers(scope=scope)
    if headers.get(REQUEST_HEADER) != "1":
        return "the header X-Tracklog-Request: 1 is missing"
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {site}"
    origin = headers.get("origin")
    if origin is not None:
        host = headers.get("host", "")
        own = {f"http://{host}", f"https://{host}"}
        if origin not in own:
            return f"Origin {origin} is not this server"
    return ""
