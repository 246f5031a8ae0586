"""``tracklog ui [--port PORT] [--stop]``: the web app of this machine's local store, like ``mlflow ui``.

The local store (``$TRACKLOG_HOME/store.db``, the embedded default) is served by one store server per
home: the daemon starts it when a run needs it, and it keeps running after the daemon has gone idle,
so the URLs ``init()`` printed keep answering. This command serves it in the foreground when no such
server answers (with the home's token and on its stable port, the same command line the daemon
spawns, so a daemon started later reuses it), and otherwise prints where it answers. ``--stop`` stops
it (a daemon that is running starts it again when a run needs it).

The address printed carries the home's token: the web app is its user's alone (see the README).
"""

from __future__ import annotations

import argparse
import os
import sys

from tracklog import _home
from tracklog._errors import UsageError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ui = sub.add_parser("ui", help="serve (or show) the web app of this machine's local store")
    ui.add_argument(
        "--port", type=int, default=0, help="HTTP port (default: the one this home used last, else 7007)"
    )
    ui.add_argument("--stop", action="store_true", help="stop the local store's server")
    ui.set_defaults(func=cmd_ui)


def cmd_ui(args: argparse.Namespace, rest: list[str]) -> int:
    from tracklogd import _local_server as local
    from tracklogd._config import DaemonConfig

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0-65535, not {args.port}")
    home = _home.ensure_home(_home.home())
    running = local.running_http_link(home)
    if args.stop:
        if running is None or not local.stop_home_server(home, running[1]):
            print(f"no local store server is running for {home}")
            return 0
        print(f"stopped the local store server of {home}")
        return 0
    if running is not None:
        link, _ = running
        port = int(link.split("?")[0].rstrip("/").rsplit(":", 1)[1])
        if args.port and args.port != port:
            raise UsageError(
                f"the local store of {home} is already served on port {port}; "
                "stop it first with `tracklog ui --stop`"
            )
        print(f"tracklog: the web app of {home} is at {link}")
        return 0
    port = local.choose_http_port(home, args.port)
    timeout = DaemonConfig.from_env().heartbeat_timeout
    command = local.server_command(home, timeout, port)
    print(f"tracklog: serving the web app of {home} at {local.local_http_url(home, port)} (Ctrl+C stops it)")
    sys.stdout.flush()
    os.execv(command[0], command)  # becomes the store server: its signals, its exit status
    return 0  # not reached
