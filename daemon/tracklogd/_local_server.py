"""The local (embedded) store server on ``$TRACKLOG_HOME/store.db``, for runs with no server given.

At daemon start a supervisor thread reuses the server named in ``server.json`` if it answers, else
spawns ``python -m tracklog_server`` (detached, output to ``server.log``) and waits for it to write
``server.json`` and answer. It keeps checking: a server that goes away is replaced (with backoff).

The server outlives the daemon. Its web app is where the run URLs printed by ``init()`` point, and
they must keep answering after the daemon has gone idle (as ``mlflow ui`` keeps serving): so the
daemon leaves the server it spawned (or took over) running when it exits, and the next daemon reuses
it. Its HTTP port is stable: the one this home had last time (``local-ports.json``), else
``DEFAULT_HTTP_PORT`` when free, else any free port, remembered from then on. ``tracklog ui`` runs the
same server in the foreground when none answers (or says where it answers), ``tracklog ui --stop``
stops it.

The local store is its user's alone: its gRPC is a 0600 unix socket in the 0700 home (``store.sock``),
never a TCP port; its web pages stay on loopback TCP for the browser but need the token kept in
``http-token`` (0600, made once and kept, so that run URLs printed earlier keep working). The token
reaches the server as a file name: a command line is readable by every user of the machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import psutil

from tracklog._home import http_token_path, server_info_path, store_db_path, store_socket_path
from tracklog._launch import unix_answers
from tracklog._tokens import private_token
from tracklogd._errors import StoreError, StoreUnavailable
from tracklogd._ratelimit import RateLimitedLog
from tracklogd._store_client import StorePool

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # a first start migrates a new database; later starts take about a second
CHECK_INTERVAL = 5.0
MAX_RESPAWN_DELAY = 60.0
DEFAULT_HTTP_PORT = 7007  # the web app's first choice of port (mlflow's is 5000, TensorBoard's 6006)


class LocalServerLike(Protocol):
    """What the daemon needs of its local server (a seam: tests give a fixed target)."""

    def start(self, on_ready: Callable[[], None]) -> None:
        """Begins making a server available; calls ``on_ready`` each time one starts answering."""

    def target(self) -> str | None:
        """The gRPC target of the server while it answers (``unix:PATH`` for the one spawned
        here), else None."""

    def http_url(self) -> str:
        """The HTTP base of the server it runs or is starting, so that run URLs can be given before
        the server answers; "" when unknown."""

    def close(self) -> None:
        """Stops looking after the server (which may keep running)."""


def ports_path(home: Path) -> Path:
    return home / "local-ports.json"


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        # As the server binds (SO_REUSEADDR): a port whose old connections linger in TIME_WAIT after
        # the last server stopped is free for the next, so the URLs printed earlier stay valid.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port(preferred: int) -> int:
    if 0 < preferred < 65536 and _bindable(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def remembered_http_port(home: Path) -> int:
    """The HTTP port this home's local server had last time, or 0."""
    try:
        return int(json.loads(ports_path(home).read_text())["http"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def remember_http_port(home: Path, port: int) -> None:
    ports_path(home).write_text(json.dumps({"http": port}) + "\n")


def choose_http_port(home: Path, wanted: int = 0) -> int:
    """The HTTP port for this home's local server: ``wanted`` if given (free or not: binding says),
    else the one it had last time when it is free (so run URLs stay valid across daemon restarts),
    else DEFAULT_HTTP_PORT when free, else a new one; remembered for next time."""
    if wanted:
        if wanted != remembered_http_port(home):
            remember_http_port(home, wanted)
        return wanted
    preferred = remembered_http_port(home) or DEFAULT_HTTP_PORT
    port = _free_port(preferred)
    if port != remembered_http_port(home):
        remember_http_port(home, port)
    return port


def server_command(home: Path, heartbeat_timeout: float, http_port: int = 0) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tracklog_server",
        "--db",
        f"sqlite:///{store_db_path(home)}",
        "--unix-socket",
        str(store_socket_path(home)),
        "--http-port",
        str(http_port),
        "--http-token-file",
        str(http_token_path(home)),
        "--address-file",
        str(server_info_path(home)),
        "--heartbeat-timeout",
        f"{heartbeat_timeout:g}",
    ]


def local_http_url(home: Path, port: int) -> str:
    """The base of the local server's pages with its token, as its ServerInfo gives it."""
    return f"http://127.0.0.1:{port}/?token={private_token(http_token_path(home))}"


def read_server_info(home: Path) -> tuple[str, int] | None:
    """(grpc target, pid) from ``server.json``, or None when it is missing or unreadable."""
    try:
        data = json.loads(server_info_path(home).read_text())
        return str(data["grpc"]), int(data.get("pid", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def home_server(home: Path, pid: int) -> psutil.Process | None:
    """The process ``pid`` if it is a running store server of ``home`` (its command line is the one
    this module spawns for the home), started by this user."""
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        proc = psutil.Process(pid)
        command = proc.cmdline()
        ours = proc.uids().real == os.getuid() and _running(proc)
    except psutil.Error:
        return None
    same = "tracklog_server" in command and str(server_info_path(home)) in command
    return proc if ours and same else None


def running_http_link(home: Path) -> tuple[str, int] | None:
    """(the web app's address with its token, the server's pid) of the home's local store server
    while it answers on its private socket; None when none does."""
    try:
        data = json.loads(server_info_path(home).read_text())
        target, http, pid = str(data["grpc"]), str(data["http"]), int(data.get("pid", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not target.startswith("unix:") or not http or not unix_answers(Path(target[len("unix:") :])):
        return None
    return f"{http}/?token={private_token(http_token_path(home))}", pid


def stop_home_server(home: Path, pid: int, timeout: float = 15.0) -> bool:
    """Stops the home's local store server ``pid`` (SIGTERM, then SIGKILL after ``timeout``); False
    when that pid is not one."""
    proc = home_server(home, pid)
    if proc is None:
        return False
    _terminate_adopted(proc, timeout)
    return True


class LocalServer:
    """Invariant: while ``_target`` is set, the server there answered; ``_proc`` is the server we
    spawned, ``_adopted`` one of this home we found running (its command line is the one this module
    spawns for this home): either is watched, and replaced when it exits."""

    def __init__(
        self,
        home: Path,
        pool: StorePool,
        stop: threading.Event,
        *,
        heartbeat_timeout: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._home = home
        self._pool = pool
        self._stop = stop
        self._heartbeat_timeout = heartbeat_timeout
        self._clock = clock
        self._ratelog = RateLimitedLog(log, interval=300.0, clock=clock)
        self._target: str | None = None
        self._http_url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._adopted: psutil.Process | None = None
        self._thread = threading.Thread(target=self._supervise, name="tracklogd-local-server", daemon=True)
        self._on_ready: Callable[[], None] = lambda: None

    def start(self, on_ready: Callable[[], None]) -> None:
        self._on_ready = on_ready
        # Run URLs can be given at once: the server this home runs (or is about to) serves its pages
        # on the remembered port with the home's token. Finding or starting it may take a while.
        port = remembered_http_port(self._home) or choose_http_port(self._home)
        self._http_url = local_http_url(self._home, port)
        self._thread.start()

    def target(self) -> str | None:
        return self._target

    def http_url(self) -> str:
        return self._http_url

    def close(self) -> None:
        """Stops supervising (the daemon's stop event must be set). The server keeps running: it
        serves the run URLs printed so far, and the next daemon reuses it."""
        if self._thread.is_alive():
            self._thread.join(10.0)
        self._target = None
        self._proc = None
        self._adopted = None

    # -- supervisor thread -------------------------------------------------------------------------

    def _supervise(self) -> None:
        # Never raises: a failure is logged and the next attempt comes after a growing delay.
        delay = 1.0
        while not self._stop.is_set():
            target = None
            try:
                target = self._reuse() or self._take_over() or self._spawn()
                if target is not None:
                    delay = 1.0
                    self._target = target
                    log.info("local store server at %s", target)
                    self._on_ready()
                    self._watch(target)
            except Exception:
                log.exception("supervising the local store server failed")
            self._target = None
            if target is None:
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RESPAWN_DELAY)

    def _reuse(self) -> str | None:
        """The server named in server.json, if it answers. One that a daemon from before the private
        socket spawned for this home serves gRPC on a TCP port that any local user can reach: it is
        stopped, and a private one is spawned in its place."""
        info = read_server_info(self._home)
        if info is None or not self._answers(info[0]):
            return None
        adopted = self._home_server(info[1])
        if adopted is not None and not info[0].startswith("unix:"):
            log.warning("replacing the local store server %d, which other users can reach", adopted.pid)
            _terminate_adopted(adopted)
            return None
        self._adopted = adopted
        return info[0]

    def _take_over(self) -> str | None:
        """A server of this home that does not answer (yet): one a killed daemon started, perhaps
        still starting up. Waits for it to answer; stops it if it does not, so none is left over."""
        leftovers = self._home_servers()
        if not leftovers:
            return None
        pids = {proc.pid for proc in leftovers}
        found = self._await(lambda pid: pid in pids, lambda: any(_running(p) for p in leftovers))
        if found is not None:
            self._adopted = next(proc for proc in leftovers if proc.pid == found[1])
            return found[0]
        for proc in leftovers:
            log.warning("stopping local store server %d, which does not answer", proc.pid)
            _terminate_adopted(proc)
        return None

    def _spawn(self) -> str | None:
        server_info_path(self._home).unlink(missing_ok=True)  # names no server that answers
        port = choose_http_port(self._home)
        self._http_url = local_http_url(self._home, port)  # makes the token before the server reads it
        with open(self._home / "server.log", "ab") as out:
            proc = self._proc = subprocess.Popen(
                server_command(self._home, self._heartbeat_timeout, port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=self._home,
                start_new_session=True,  # not in the daemon's process group: signals stay separate
            )
        found = self._await(lambda pid: pid in (0, proc.pid), lambda: proc.poll() is None)
        if found is not None:
            return found[0]
        if self._stop.is_set():
            return None  # it goes on starting; the next daemon reuses it
        self._proc = None
        if proc.returncode is not None:
            self._ratelog.log(
                logging.ERROR,
                "exit",
                "the local store server exited with code %s; see %s",
                proc.returncode,
                self._home / "server.log",
            )
        else:
            log.error("the local store server did not answer within %.0fs", START_TIMEOUT)
            _terminate(proc)
        return None

    def _await(self, accept: Callable[[int], bool], alive: Callable[[], bool]) -> tuple[str, int] | None:
        """Waits until server.json names an accepted pid whose server answers: (target, pid).
        None when ``alive()`` turns false, the start timeout passes, or the daemon stops."""
        deadline = self._clock() + START_TIMEOUT
        while not self._stop.is_set() and self._clock() < deadline and alive():
            info = read_server_info(self._home)
            if info is not None and accept(info[1]) and self._answers(info[0]):
                return info
            self._stop.wait(0.05)  # a starting server writes its address file; nothing to wait on
        return None

    def _answers(self, target: str) -> bool:
        try:
            info = self._pool.fetch_info(target)  # also caches its http_url for run URLs
        except StoreError:
            return False
        self._http_url = info.http_url
        return True

    def _home_server(self, pid: int) -> psutil.Process | None:
        return home_server(self._home, pid)

    def _home_servers(self) -> list[psutil.Process]:
        own = self._proc.pid if self._proc is not None else -1
        found = (self._home_server(pid) for pid in psutil.pids() if pid != own)
        return [proc for proc in found if proc is not None]

    def _watch(self, target: str) -> None:
        """Returns when the server has gone away (or the daemon stops)."""
        misses = 0
        while not self._stop.wait(CHECK_INTERVAL):
            proc, adopted = self._proc, self._adopted
            if proc is not None:
                if proc.poll() is None:
                    continue
                log.warning("the local store server exited with code %s", proc.returncode)
                self._proc = None
                return
            if adopted is not None:
                if _running(adopted):
                    continue
                log.warning("the local store server %d exited", adopted.pid)
                self._adopted = None
                return
            try:  # a server someone else started: gone only after repeated refusals
                self._pool.fetch_info(target)
                misses = 0
            except StoreUnavailable:
                misses += 1
                if misses >= 3:
                    log.warning("the local store server at %s stopped answering", target)
                    return
            except StoreError:
                misses = 0


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the local store server did not stop within %.0fs; killing it", timeout)
            proc.kill()
            proc.wait()
        except OSError:
            pass
    if proc.returncode not in (None, 0, -signal.SIGTERM):
        log.info("the local store server exited with code %s", proc.returncode)


def _terminate_adopted(proc: psutil.Process, timeout: float = 10.0) -> None:
    """Stops a server that is not our child (``psutil`` waits for it by polling)."""
    try:
        proc.terminate()
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        log.warning("the local store server %d did not stop within %.0fs; killing it", proc.pid, timeout)
        with contextlib.suppress(psutil.Error):
            proc.kill()
    except psutil.Error:
        pass  # already gone
