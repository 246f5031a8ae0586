"""The commands wandb users reach for: ``tracklog offline``, ``online``, ``disabled`` and ``status``
(the default mode of ``init()``), ``login`` (checks the server answers, then remembers it),
``logout`` (back to the local store) and ``--version``.

Both settings live in ``$TRACKLOG_HOME/settings.json`` (0600), read by ``init()`` and ``Api()``:
``TRACKLOG_MODE`` and ``TRACKLOG_SERVER`` override them, and ``init(mode=...)`` overrides both.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from tracklog import _home, _settings
from tracklog._errors import UsageError

LOGIN_TIMEOUT = 10.0  # seconds a server has to answer `tracklog login`


def _settings_file() -> Path:
    return _home.ensure_home(_home.home()) / "settings.json"


def _save(**changes: Any) -> Path:
    """Merges ``changes`` into settings.json (a value of None removes that key); written whole
    through a temporary file, so a reader never sees half of it."""
    target = _settings_file()
    current = _settings.saved(target.parent)
    current.update(changes)
    kept = {k: v for k, v in current.items() if v is not None}
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(kept, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, target)
    except OSError as exc:  # a full disk or a read-only home: the old settings stay as they were
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot save {target}: {exc.strerror or exc}; the settings are unchanged") from exc
    return target


def _cmd_mode(args: argparse.Namespace, rest: list[str]) -> int:
    mode = args.command
    target = _save(mode=None if mode == "online" else mode)
    what = {
        "online": "runs go to the store server again",
        "offline": "runs stay in ./tracklog until `tracklog sync`",
        "disabled": "init() returns runs that record nothing",
    }[mode]
    print(f"tracklog mode: {mode} ({what}; saved in {target})")
    if os.environ.get("TRACKLOG_MODE") and os.environ["TRACKLOG_MODE"] != mode:
        print(f"note: TRACKLOG_MODE={os.environ['TRACKLOG_MODE']} is set here and wins over this setting")
    return 0


def _cmd_status(args: argparse.Namespace, rest: list[str]) -> int:
    home = _home.home()
    saved = _settings.saved(home)
    env_mode = os.environ.get("TRACKLOG_MODE", "")
    mode = env_mode or str(saved.get("mode", "") or "online")
    source = "TRACKLOG_MODE" if env_mode else ("settings.json" if saved.get("mode") else "default")
    server = _settings.configured_server(os.environ, home)
    server_source = (
        "TRACKLOG_SERVER" if os.environ.get("TRACKLOG_SERVER") else "tracklog login" if server else "default"
    )
    print(f"mode:    {mode} ({source})")
    print(f"server:  {server or 'the local store in ' + str(home / 'store.db')} ({server_source})")
    print(f"home:    {home}")
    print(f"runs in: {Path(os.environ.get('TRACKLOG_DIR') or os.getcwd()) / 'tracklog'}")
    return 0


def check_server(server: str, timeout: float = LOGIN_TIMEOUT) -> str:
    """The store server's version if it answers at ``server`` within ``timeout``, else UsageError."""
    import grpc

    from tracklog import _launch
    from tracklog.v1 import store_pb2, store_pb2_grpc

    channel = _launch.channel(server)
    try:
        info = store_pb2_grpc.StoreStub(channel).ServerInfo(store_pb2.ServerInfoRequest(), timeout=timeout)
    except grpc.RpcError as exc:
        detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        raise UsageError(
            f"no tracklog store server answers at {server} ({detail}); nothing was saved. "
            "Start one with `tracklog server --db URL`, or check the address"
        ) from exc
    finally:
        channel.close()
    return info.version or "unknown version"


def _cmd_login(args: argparse.Namespace, rest: list[str]) -> int:
    server = _settings.validate_server(args.server)
    version = check_server(server, args.timeout)
    target = _save(server=server)
    print(
        f"tracklog will use the store server at {server}, version {version} "
        f"(saved in {target}; TRACKLOG_SERVER overrides it)"
    )
    return 0


def _cmd_logout(args: argparse.Namespace, rest: list[str]) -> int:
    had = _settings.saved(_home.home()).get("server")
    _save(server=None)
    if had:
        print(f"tracklog no longer uses {had}; runs go to the local store again")
    else:
        print("no store server was set; runs go to the local store")
    if os.environ.get("TRACKLOG_SERVER"):
        print(f"note: TRACKLOG_SERVER={os.environ['TRACKLOG_SERVER']} is set here and still applies")
    return 0


def add_commands(sub: Any) -> None:
    """Adds offline, online, disabled, status, login and logout to the ``tracklog`` parser."""
    for mode, text in (
        ("offline", "keep new runs in ./tracklog until `tracklog sync` (the default mode of init())"),
        ("online", "send new runs to the store server (the default)"),
        ("disabled", "make init() return runs that record nothing"),
    ):
        sub.add_parser(mode, help=text).set_defaults(func=_cmd_mode)
    sub.add_parser("status", help="show the mode and store server init() uses").set_defaults(func=_cmd_status)
    login = sub.add_parser("login", help="check a store server answers, then remember it")
    login.add_argument("--server", required=True, help="host:port (or unix:/path) of the store server")
    login.add_argument("--timeout", type=float, default=LOGIN_TIMEOUT, help="seconds to wait for it")
    login.set_defaults(func=_cmd_login)
    sub.add_parser("logout", help="forget the store server: use the local store").set_defaults(
        func=_cmd_logout
    )


def add_version(top: argparse.ArgumentParser) -> None:
    from tracklog import __version__

    top.add_argument("--version", action="version", version=f"tracklog {__version__}")
