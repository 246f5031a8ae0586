"""Resolution of a run's settings from ``init()`` arguments, then the environment, then defaults."""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tracklog import _home, _refs, _rules
from tracklog._errors import UsageError

MODES = ("online", "offline", "disabled")
RESUME = ("allow", "must", "never")
AUTO_RESUME_FILE = "resume-auto.json"  # in ./tracklog: the run resume="auto" continues unless it finished
MAX_NAME = 128
MAX_TAG = 64
MAX_NOTES = 64 * 1024
_HOST_PORT = re.compile(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}")
_UNIX_TARGET = re.compile(r"unix:(//)?/[^\x00]+")
_ENTITY_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_entity() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        user = "user"
    return _ENTITY_SAFE.sub("-", user)[:64] or "user"


def validate_server(value: str) -> str:
    """``host:port``, or ``unix:/absolute/path`` of a server started with ``--unix-socket``."""
    if _HOST_PORT.fullmatch(value) or _UNIX_TARGET.fullmatch(value):
        return value
    raise UsageError(
        f"TRACKLOG_SERVER {value!r} must look like host:port (e.g. 127.0.0.1:7070) or unix:/path/to.sock"
    )


def _check_chars(what: str, value: str) -> str:
    """``value`` unless it holds what the store cannot keep (a NUL, a lone surrogate)."""
    problem = _rules.text_problem(value)
    if problem is not None:
        raise UsageError(f"{what} {_rules.short(value)} {problem}")
    return value


def validate_name(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"run name must be a str, got {type(value).__name__}")
    if not value.strip() or len(value) > MAX_NAME:
        raise UsageError(f"run name must be 1-{MAX_NAME} characters, got {len(value)}")
    return _check_chars("run name", value)


def validate_tags(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise TypeError(f"tags must be a list or tuple of str, got {type(value).__name__}")
    tags: list[str] = []
    for tag in value:
        if not isinstance(tag, str):
            raise TypeError(f"tag {tag!r} must be a str, got {type(tag).__name__}")
        if not tag or len(tag) > MAX_TAG:
            raise UsageError(f"tag {tag!r} must be 1-{MAX_TAG} characters")
        _check_chars("tag", tag)
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)


def validate_text(kind: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"run {kind} must be a str, got {type(value).__name__}")
    if len(value) > limit:
        raise UsageError(f"run {kind} is {len(value)} characters; the limit is {limit}")
    return _check_chars(f"run {kind}", value)


def saved(home: Path) -> dict[str, object]:
    """What ``tracklog login``, ``offline``, ``online`` and ``disabled`` saved in the home's
    settings.json (empty when there is none or it is unreadable)."""
    try:
        data = json.loads((home / "settings.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def configured_server(environ: Mapping[str, str], home: Path) -> str:
    """``TRACKLOG_SERVER``, else the server saved by ``tracklog login``, else "" (the local store)."""
    server = environ.get("TRACKLOG_SERVER", "") or str(saved(home).get("server", "") or "")
    return validate_server(server) if server else ""


def _auto_resume_id(root: Path) -> str | None:
    """The id of the last ``resume="auto"`` run under ``root`` that did not finish, if any."""
    try:
        run_id = json.loads((root / "tracklog" / AUTO_RESUME_FILE).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    try:
        return _refs.validate_part("id", run_id)
    except (TypeError, ValueError):
        return None  # damaged or hand-edited: start a new run rather than refuse to start


@dataclass(frozen=True)
class Settings:
    mode: str
    entity: str
    project: str
    run_id: str
    id_given: bool
    root_dir: Path  # where the ``tracklog/`` folder of run directories goes
    home: Path
    server: str  # host:port, or "" for the daemon's local server
    resume: str  # "" or one of RESUME
    auto_resume: bool = False  # resume="auto": resume the last such run here unless it finished


def resolve(
    *,
    project: str | None,
    entity: str | None,
    run_id: str | None,
    mode: str | None,
    dir: str | os.PathLike[str] | None,
    resume: str | bool | None,
    environ: dict[str, str] | None = None,
) -> Settings:
    env = dict(os.environ) if environ is None else environ
    tracklog_home = _home.home(env)
    mode = mode or env.get("TRACKLOG_MODE") or str(saved(tracklog_home).get("mode", "") or "") or "online"
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    root = Path(dir or env.get("TRACKLOG_DIR") or os.getcwd()).absolute()
    auto_resume = resume == "auto"
    if auto_resume:
        run_id = run_id or _auto_resume_id(root) or env.get("TRACKLOG_RUN_ID") or None
        resume = "allow" if run_id is not None else None
    project = project or env.get("TRACKLOG_PROJECT") or _refs.DEFAULT_PROJECT
    entity = entity or env.get("TRACKLOG_ENTITY") or default_entity()
    id_given = run_id is not None
    run_id = run_id or env.get("TRACKLOG_RUN_ID") or _refs.generate_id()
    try:
        _refs.RunPath(entity, project, run_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if resume is True:
        resume = "allow"
    elif resume is False or resume is None:
        resume = ""
    if resume and resume not in RESUME:
        raise UsageError(f"resume must be one of {', '.join(RESUME)}, 'auto' or a bool; got {resume!r}")
    server = configured_server(env, tracklog_home)
    return Settings(
        mode=mode,
        entity=entity,
        project=project,
        run_id=run_id,
        id_given=id_given,
        root_dir=root,
        home=tracklog_home,
        server=server,
        resume=resume,
        auto_resume=auto_resume,
    )


MAX_BUFFER_ENV = "TRACKLOG_MAX_BUFFER_MB"


def max_buffer_bytes(environ: Mapping[str, str], default: int) -> int:
    """The training process's memory cap for data the daemon has not taken (TRACKLOG_MAX_BUFFER_MB,
    in MiB; at least 1)."""
    text = environ.get(MAX_BUFFER_ENV, "").strip()
    if not text:
        return default
    try:
        mib = float(text)
    except ValueError:
        mib = float("nan")
    if not mib >= 1 or mib == float("inf"):
        raise UsageError(f"{MAX_BUFFER_ENV} must be a number of MiB, at least 1; got {text!r}")
    return int(mib * 2**20)
