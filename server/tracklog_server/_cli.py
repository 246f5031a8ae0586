"""``tracklog server`` / ``python -m tracklog_server``: run a store server until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tracklog import _home, _tokens

from ._errors import StoreError
from ._server import DEFAULT_HEARTBEAT_TIMEOUT, StoreServer
from .storage._database import display_url, normalize_url
from .transport._web_auth import is_loopback

log = logging.getLogger("tracklog_server")

DEFAULT_PORT = 7070


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tracklog server",
        description="Run the tracklog store server: gRPC for daemons and the Api, HTTP for run pages.",
    )
    p.add_argument(
        "--db",
        metavar="URL",
        help="database URL: sqlite:///PATH or postgresql://USER@HOST/DB (default: sqlite:///"
        "$TRACKLOG_HOME/store.db)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="gRPC port; 0 picks a free one (default: 7070)"
    )
    p.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="HTTP port (default: --port + 1, or a free one with --port 0); -1 disables HTTP",
    )
    p.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=DEFAULT_HEARTBEAT_TIMEOUT,
        metavar="SECONDS",
        help="mark a running run crashed after this long without a heartbeat (default: 120)",
    )
    p.add_argument(
        "--address-file",
        type=Path,
        metavar="PATH",
        help='once listening, write {"grpc": HOST:PORT, "http": URL, "pid": PID} here (atomically)',
    )
    p.add_argument(
        "--unix-socket",
        type=Path,
        metavar="PATH",
        help="serve gRPC on this unix socket (mode 0600: only this user may connect) instead of a TCP port",
    )
    p.add_argument(
        "--http-token-file",
        type=Path,
        metavar="PATH",
        help="require the token in this file (created, random and 0600, if missing) for every HTTP "
        "request; the printed address carries it as ?token=...",
    )
    p.add_argument(
        "--http-allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the web app also answers to while listening on the loopback (a reverse "
        "proxy's public name); repeatable. Others get 403: a defence against DNS rebinding",
    )
    p.add_argument(
        "--insecure-allow-remote",
        action="store_true",
        help="allow a non-loopback --host although the server has no authentication yet",
    )
    return p


def _http_port(args: argparse.Namespace) -> int | None:
    if args.http_port is None:
        return 0 if args.port == 0 else args.port + 1
    if args.http_port == -1:
        return None
    return int(args.http_port)


def _write_address_file(path: Path, data: dict[str, object]) -> None:
    """Writes JSON so that a reader sees either no file or the whole of it (rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_address_file(path: Path) -> None:
    """Removes the file if it still describes this process (a newer server may have replaced it)."""
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Runs the server until SIGTERM/SIGINT; returns the exit status (0 after a clean stop)."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="tracklog: %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step is noise
    if not args.insecure_allow_remote and not is_loopback(args.host):
        print(
            f"tracklog: error: refusing to listen on {args.host!r}: the server has no authentication yet. "
            "Use a loopback address, or pass --insecure-allow-remote on a network you trust.",
            file=sys.stderr,
        )
        return 2
    if not 0 <= args.port <= 65535 or not (args.http_port is None or -1 <= args.http_port <= 65535):
        print("tracklog: error: ports must be 0-65535 (--http-port also -1)", file=sys.stderr)
        return 2
    db = args.db
    if db is None:
        db = "sqlite:///" + os.fspath(_home.store_db_path(_home.ensure_home(_home.home())))
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda _signum, _frame: stop.set())
    try:
        token = None if args.http_token_file is None else _tokens.private_token(args.http_token_file)
    except OSError as exc:
        print(
            f"tracklog: error: cannot read or create the HTTP token {args.http_token_file}: {exc}",
            file=sys.stderr,
        )
        return 1
    try:
        url = normalize_url(db)
        server = StoreServer(
            db,
            host=args.host,
            port=args.port,
            http_port=_http_port(args),
            heartbeat_timeout=args.heartbeat_timeout,
            allow_remote=args.insecure_allow_remote,
            unix_socket=args.unix_socket,
            http_token=token,
            http_allowed_hosts=args.http_allowed_host,
        )
    except StoreError as exc:
        print(f"tracklog: error: {exc}", file=sys.stderr)
        return 1
    try:
        server.start()
    except (OSError, StoreError) as exc:
        print(f"tracklog: error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.address_file is not None:
            _write_address_file(
                args.address_file, {"grpc": server.grpc_address, "http": server.http_url, "pid": os.getpid()}
            )
        log.info(
            "store server on %s (gRPC) and %s, database %s",
            server.grpc_address,
            # The token is in the file named by --http-token-file; logs never hold it.
            (server.http_url + (" (token required)" if token else "")) if server.http_url else "no HTTP",
            display_url(url),
        )
        stop.wait()
        log.info("stopping")
    finally:
        server.stop()
        if args.address_file is not None:
            _remove_address_file(args.address_file)
    return 0
