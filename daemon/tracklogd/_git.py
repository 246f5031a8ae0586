"""Git state of the directory a run started in: remote (credentials stripped), branch, commit, dirty
flag, and the uncommitted diff.

Every question is one ``git`` command with a timeout, run without a terminal prompt, without taking
the optional index lock (the user's own git commands must never find it held), and with the user's
diff configuration overridden where it would break the patch (external diff, textconv, colour,
prefixes, relative paths). Not a checkout, no commit yet, no git binary, a timeout: the fields stay
empty; nothing raises.

The diff is ``git diff HEAD --binary``: every change to tracked files, staged or not, binary ones
included, which ``git apply`` applies onto the commit. Untracked files are NOT in it (they may be
data sets, checkpoints or secrets nobody meant to record); they still make the tree dirty, since
the commit alone does not reproduce the run then.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GIT_TIMEOUT = 10.0  # seconds per git command
MAX_DIFF_BYTES = 100 * 1024 * 1024  # a larger diff is left out (and logged): it is not a code change

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git"})
# Variables that would point git somewhere other than the directory asked about.
_GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_NAMESPACE")


@dataclass(frozen=True)
class GitInfo:
    remote: str = ""
    branch: str = ""
    commit: str = ""
    dirty: bool = False
    root: str = ""  # the checkout's top directory ("" when not a checkout)

    def metadata(self) -> dict[str, object]:
        """The metadata's ``git`` object (without the local root)."""
        out = asdict(self)
        del out["root"]
        return out


def strip_credentials(url: str) -> str:
    """``url`` without secrets: ``https://user:token@host/x`` -> ``https://host/x`` (for every
    non-ssh scheme the whole user part goes, since a lone user name is often a token, and so do a
    query and fragment); ssh URLs and scp-like ``user@host:path`` keep a user without a password."""
    url = url.strip()
    match = _SCHEME.match(url)
    if match:
        scheme = match.group(1).lower()
        rest = url[match.end() :]
        end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0], default=len(rest))
        authority, tail = rest[:end], rest[end:]
        if "@" in authority:
            user, host = authority.rsplit("@", 1)
            keep = scheme in _SSH_SCHEMES and ":" not in user
            authority = f"{user}@{host}" if keep else host
        if scheme not in _SSH_SCHEMES:
            tail = re.split(r"[?#]", tail, maxsplit=1)[0]
        return url[: match.end()] + authority + tail
    # scp-like syntax: [user@]host:path, the first ':' before any '/'.
    head = url.split("/", 1)[0]
    at = head.rfind("@")
    if at > 0 and ":" in head[at + 1 :]:
        user = url[:at]
        return url if ":" not in user else url[at + 1 :]
    return url


class Git:
    def __init__(self, git: str = "git", timeout: float = GIT_TIMEOUT) -> None:
        self._git = git
        self._timeout = timeout
        env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
        env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})
        self._env = env

    def _run(self, directory: str, *args: str, timeout: float | None = None) -> bytes | None:
        """stdout of ``git -C directory args``, or None when it fails, times out or git is missing."""
        try:
            done = subprocess.run(
                [self._git, "-C", directory, *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env=self._env,
                timeout=self._timeout if timeout is None else timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:  # no git binary, timeout
            log.debug("git %s in %s: %s", args[0], directory, exc)
            return None
        if done.returncode != 0:
            return None
        return done.stdout

    def _text(self, directory: str, *args: str) -> str:
        out = self._run(directory, *args)
        return out.decode("utf-8", "replace").strip() if out is not None else ""

    def info(self, directory: str | Path) -> GitInfo:
        """The Git state of ``directory``; all empty when it is not inside a checkout."""
        directory = str(directory)
        root = self._text(directory, "rev-parse", "--show-toplevel")
        if not root:
            return GitInfo()
        commit = self._text(directory, "rev-parse", "--verify", "--quiet", "HEAD")
        branch = self._text(directory, "symbolic-ref", "--quiet", "--short", "HEAD")
        status = self._run(directory, "status", "--porcelain", "--untracked-files=normal")
        return GitInfo(
            remote=strip_credentials(self._remote(directory, branch)),
            branch=branch,
            commit=commit,
            dirty=bool(status and status.strip()),
            root=root,
        )

    def _remote(self, directory: str, branch: str) -> str:
        # One read of the config: every remote's URL and every branch's remote. The branch's own
        # remote wins, then "origin", then the first one configured.
        out = self._text(directory, "config", "--get-regexp", r"^(remote\..*\.url|branch\..*\.remote)$")
        urls: dict[str, str] = {}
        upstream = ""
        for line in out.splitlines():
            key, _, value = line.partition(" ")
            if key.startswith("remote.") and key.endswith(".url"):
                urls.setdefault(key[len("remote.") : -len(".url")], value)
            elif branch and key == f"branch.{branch}.remote":
                upstream = value
        for name in (upstream, "origin"):
            if name in urls:
                return urls[name]
        return next(iter(urls.values()), "")

    def diff(self, directory: str | Path) -> bytes:
        """``git diff HEAD --binary`` of tracked files (b"" when clean, not a checkout, or too big)."""
        out = self._run(
            str(directory),
            "diff",
            "HEAD",
            "--binary",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--no-relative",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            "--ignore-submodules=dirty",
            timeout=self._timeout * 3,
        )
        if out is None:
            return b""
        if len(out) > MAX_DIFF_BYTES:
            log.warning(
                "the uncommitted diff in %s is %d bytes (over %d); diff.patch is left out",
                directory,
                len(out),
                MAX_DIFF_BYTES,
            )
            return b""
        return out
