"""Random secrets kept in private files, and web addresses that carry one.

Two secrets use this: the local store's HTTP token (``$TRACKLOG_HOME/http-token``, so that a run page
is its user's alone) and a run's writer token (``RunStart.writer_token``, so that the store accepts a
run's frames only from the process that started it). Only ``os`` is used: ``import tracklog`` loads
neither ``secrets`` nor ``hashlib``, and ``os.urandom`` is what ``secrets`` draws from.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

TOKEN_BYTES = 24  # 192 bits: far beyond guessing, short enough for a URL
_TOKEN_CHARS = frozenset("0123456789abcdef")


def new_token() -> str:
    """A fresh random token of hex digits."""
    return os.urandom(TOKEN_BYTES).hex()


def is_token(text: str) -> bool:
    return len(text) == 2 * TOKEN_BYTES and set(text) <= _TOKEN_CHARS


def private_token(path: Path) -> str:
    """The token kept in ``path``, created (mode 0600, atomically) when it does not exist yet.

    Stable across calls and processes, so that URLs printed earlier keep working. A file another user
    could read, or that does not hold a token, is replaced by a new one: a token others may have seen
    protects nothing. Two processes creating it at once agree: the first link wins and both read it.
    """
    token = _read_private(path)
    if token is not None:
        return token
    fresh = new_token()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (fresh + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if os.path.lexists(path) and _read_private(path) is None:
            path.unlink(missing_ok=True)  # unusable: replaced below
        with contextlib.suppress(FileExistsError):  # a concurrent creator's token wins
            os.link(tmp, path)  # atomic and exclusive
    finally:
        tmp.unlink(missing_ok=True)
    token = _read_private(path)
    if token is None:
        raise PermissionError(f"cannot keep a private token in {path}")
    return token


def _read_private(path: Path) -> str | None:
    """The token in ``path`` if it is a regular file of this user that no one else can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None
        text = os.read(fd, 256).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    return text if is_token(text) else None


def page_url(http_url: str, path: str) -> str:
    """The address of ``path`` (e.g. ``entity/project/runs/id``) on a store whose HTTP base is
    ``http_url``. A base may carry a query (the local store's ``?token=...``), kept at the end."""
    if not http_url:
        return ""
    base, sep, query = http_url.partition("?")
    return f"{base.rstrip('/')}/{path.lstrip('/')}{sep}{query}"
