"""The ways a user names a run to ``Api.run`` and the CLI: ``entity/project/id``, the web page's
``entity/project/runs/id``, ``project/id`` (the default entity), or the run's URL as printed."""

from __future__ import annotations

import os
from collections.abc import Callable

from tracklog import _settings
from tracklog._errors import UsageError
from tracklog._refs import RunPath

FORMS = "'entity/project/id', 'entity/project/runs/id', 'project/id' or the run's URL"


def default_entity() -> str:
    """The entity of a path without one: TRACKLOG_ENTITY, else the user's name (as init() uses)."""
    return os.environ.get("TRACKLOG_ENTITY") or _settings.default_entity()


def parse_run_path(path: object, default_entity: Callable[[], str] = default_entity) -> RunPath:
    """The run ``path`` names; UsageError saying which forms are accepted, or what part is wrong."""
    if isinstance(path, RunPath):
        return path
    if not isinstance(path, str):
        raise UsageError(f"a run path must be a str, not {type(path).__name__}")
    text = path.strip()
    if "://" in text:  # a page URL: http://host:port/entity/project/runs/id?token=...#...
        text = text.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0]
        text = text.partition("/")[2]
    parts = [p for p in text.strip("/").split("/") if p]
    if len(parts) == 5 and parts[2] == "runs":
        parts = parts[:4]  # a page's tab after the id: .../runs/id/logs
    if len(parts) in (3, 4) and parts[-2] == "runs":
        parts = [*parts[:-2], parts[-1]]  # entity/project/runs/id, or project/runs/id
    if len(parts) == 2:
        parts = [default_entity(), *parts]
    if len(parts) != 3:
        raise UsageError(f"run path {path!r} must look like {FORMS}")
    try:
        return RunPath(*parts)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"run path {path!r}: {exc}") from exc
