"""Where the per-user daemon lives: ``$TRACKLOG_HOME`` (default ``~/.tracklog``) and the files in it.

Files: ``daemon.sock`` (unix socket, mode 0600, in a 0700 directory), ``daemon.lock`` (held with
flock by the one running daemon), ``daemon.json`` (pid and gRPC target of the running daemon),
``daemon.log``, ``server.json`` (address of the embedded store server), ``store.sock`` (its gRPC, a
0600 unix socket), ``http-token`` (the token its web pages need, 0600), ``store.db`` (its SQLite
database) and ``pending/`` (one small JSON file per run the daemon still has to sync).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# sockaddr_un.sun_path holds 108 bytes; keep room for the terminating NUL and some slack.
_MAX_SOCKET_PATH = 100


def home(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    value = env.get("TRACKLOG_HOME") or os.path.join(os.path.expanduser("~"), ".tracklog")
    return Path(value).absolute()


def ensure_home(path: Path) -> Path:
    """Creates the home directory readable only by its user (the daemon accepts only that user)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def socket_path(path: Path) -> Path:
    """The daemon's unix socket."""
    return _socket(path, "daemon.sock")


def store_socket_path(path: Path) -> Path:
    """The unix socket of the local store server's gRPC (only this user may connect to it)."""
    return _socket(path, "store.sock")


def http_token_path(path: Path) -> Path:
    """The local store's HTTP token (mode 0600), kept across restarts so printed URLs keep working."""
    return path / "http-token"


def _socket(path: Path, name: str) -> Path:
    """``name`` in the home. A home whose path is too long for a socket name gets a short private
    directory under the temp dir, derived from the home path so that every process agrees."""
    candidate = path / name
    if len(os.fsencode(candidate)) <= _MAX_SOCKET_PATH:
        return candidate
    # Imported here: only such a home needs them, and they cost ``import tracklog`` about 4 ms.
    import hashlib
    import tempfile

    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"tracklog-{os.getuid()}-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    # Its name is predictable: another user could have created it first and then swap our socket.
    st = os.lstat(short)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{short} is not a private directory of this user; remove it and retry")
    return short / name


def daemon_target(path: Path) -> str:
    """The gRPC target of the daemon for this home."""
    return f"unix://{socket_path(path)}"


def lock_path(path: Path) -> Path:
    return path / "daemon.lock"


def daemon_info_path(path: Path) -> Path:
    return path / "daemon.json"


def daemon_log_path(path: Path) -> Path:
    return path / "daemon.log"


def server_info_path(path: Path) -> Path:
    return path / "server.json"


def store_db_path(path: Path) -> Path:
    return path / "store.db"


def pending_dir(path: Path) -> Path:
    return path / "pending"
