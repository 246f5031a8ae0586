"""A project's runs as the web app's workspace reads them: a page of runs, groups, a description.

These work on the runs the store lists for the project (one query, at most ``MAX_SCAN_RUNS`` runs) and
decide in Python: correct for any filter this module understands, linear in the project's size. The
search use cases of the run-management issue (``_search``: filters compiled to SQL, keyset pages) take
their place as they land; the web API calls only the names below, so the swap stays inside this layer.

Filters understood here: ``{"state": "finished"}``, ``{"<field>": value}`` and ``{"<field>":
{"$eq"|"$ne"|"$lt"|"$lte"|"$gt"|"$gte"|"$in"|"$nin": ...}}`` on ``state``, ``name``, ``group``,
``job_type``, ``tags``, ``config.<key>`` and ``summary.<key>``, combined with ``$and`` / ``$or``.
Anything else is refused with a message naming it, never ignored (an ignored filter would show an
unfiltered table as a filtered one).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tracklog_server._entities import Run, RunFilter
from tracklog_server._errors import InvalidInputError
from tracklog_server.storage._store import AbstractStore

from ._runs import Caller

MAX_SCAN_RUNS = 100_000
MAX_PER_PAGE = 1000
MAX_SEARCH = 256  # characters of a search text or pattern
MAX_DISTINCT = 50  # distinct string values described per key
_FIELDS = ("state", "name", "group", "job_type", "tags", "id", "host", "notes")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$lt": lambda a, b: _ordered(a, b) and a < b,
    "$lte": lambda a, b: _ordered(a, b) and a <= b,
    "$gt": lambda a, b: _ordered(a, b) and a > b,
    "$gte": lambda a, b: _ordered(a, b) and a >= b,
    "$in": lambda a, b: a in b,
    "$nin": lambda a, b: a not in b,
}


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[Run]
    next_cursor: str | None
    total: int


@dataclass(frozen=True, slots=True)
class RunGroup:
    value: Any
    count: int
    summary: dict[str, tuple[float, float, float]]  # numeric summary key -> (min, mean, max)


@dataclass(frozen=True, slots=True)
class KeyDescription:
    key: str
    type: str  # number | string | bool | other
    min: float | None
    max: float | None
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProjectDescription:
    entity: str
    project: str
    run_count: int
    config_keys: tuple[KeyDescription, ...]
    summary_keys: tuple[KeyDescription, ...]
    metric_keys: tuple[str, ...]


def _ordered(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool)) or (
        isinstance(a, str) and isinstance(b, str)
    )


def _docs(run: Run) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, text in (("config", run.config_json), ("summary", run.summary_json)):
        try:
            value = json.loads(text) if text else {}
        except ValueError:
            value = {}
        out[name] = value if isinstance(value, dict) else {}
    return out


def field_value(run: Run, field: str, docs: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """The value of ``field`` (``state``, ``config.lr``, ``summary.acc`` ...) on ``run``; None when absent."""
    if field in _FIELDS:
        if field == "state":
            return run.state.value
        if field == "id":
            return run.key.id
        value = getattr(run, field)
        return list(value) if isinstance(value, tuple) else value
    if field in ("created_at", "runtime", "heartbeat_at"):
        return getattr(run, field)
    check_field(field)
    head, _, rest = field.partition(".")
    docs = docs if docs is not None else _docs(run)
    return docs[head].get(rest)


def check_field(field: str) -> None:
    """InvalidInputError unless ``field`` names something a run has (checked before any run is read,
    so an unknown field is an error even in an empty project)."""
    if field in _FIELDS or field in ("created_at", "runtime", "heartbeat_at"):
        return
    head, dot, rest = field.partition(".")
    if dot and head in ("config", "summary") and rest:
        return
    raise InvalidInputError(
        f"unknown field {field!r}: use one of {', '.join(_FIELDS)}, created_at, runtime, "
        "config.<key> or summary.<key>"
    )


def parse_filter(filters: Any) -> Callable[[Run], bool]:
    """A predicate on runs for a wandb/MongoDB-style filter; InvalidInputError names what is wrong."""
    if filters is None or filters == {}:
        return lambda _run: True
    if not isinstance(filters, dict):
        raise InvalidInputError("a filter must be a JSON object")
    parts: list[Callable[[Run], bool]] = []
    for name, cond in filters.items():
        if name in ("$and", "$or"):
            if not isinstance(cond, list) or not cond:
                raise InvalidInputError(f"{name} takes a non-empty list of filters")
            parts.append(_combined(name, [parse_filter(c) for c in cond]))
        elif name.startswith("$"):
            raise InvalidInputError(f"unknown operator {name!r} at the top of a filter")
        else:
            check_field(name)
            parts.append(_condition(name, cond))
    return lambda run: all(p(run) for p in parts)


def _combined(op: str, subs: list[Callable[[Run], bool]]) -> Callable[[Run], bool]:
    if op == "$and":
        return lambda run: all(s(run) for s in subs)
    return lambda run: any(s(run) for s in subs)


def _condition(field: str, cond: Any) -> Callable[[Run], bool]:
    tests: list[tuple[Callable[[Any, Any], bool], Any]] = []
    if isinstance(cond, dict) and cond and all(isinstance(k, str) and k.startswith("$") for k in cond):
        for op, operand in cond.items():
            fn = _OPS.get(op)
            if fn is None:
                raise InvalidInputError(f"unknown operator {op!r} on {field!r}; use one of {', '.join(_OPS)}")
            if op in ("$in", "$nin") and not isinstance(operand, list):
                raise InvalidInputError(f"{op} on {field!r} takes a list")
            tests.append((fn, operand))
    else:
        tests.append((_OPS["$eq"], cond))

    def check(run: Run) -> bool:
        value = field_value(run, field)
        if field == "tags":  # a tag field matches when any tag does, as MongoDB's arrays do
            return all(any(fn(tag, operand) for tag in value) or fn(value, operand) for fn, operand in tests)
        return all(fn(value, operand) for fn, operand in tests)

    return check


def _matcher(search: str) -> Callable[[str], bool]:
    if len(search) > MAX_SEARCH:
        raise InvalidInputError(f"a search is at most {MAX_SEARCH} characters")
    if len(search) >= 2 and search.startswith("/") and search.endswith("/"):
        try:
            pattern = re.compile(search[1:-1], re.IGNORECASE)
        except re.error as exc:
            raise InvalidInputError(f"the search pattern is not a valid regular expression: {exc}") from exc
        return lambda name: pattern.search(name) is not None
    needle = search.casefold()
    return lambda name: needle in name.casefold()


def _sort_key(field: str) -> Callable[[Run], tuple[int, Any]]:
    def key(run: Run) -> tuple[int, Any]:
        value = field_value(run, field)
        if isinstance(value, bool) or value is None:
            return (2, 0) if value is None else (0, float(value))
        if isinstance(value, int | float):
            return (0, value) if not math.isnan(value) else (2, 0)
        return (1, str(value))

    return key


def _project_runs(store: AbstractStore, entity: str, project: str) -> list[Run]:
    return store.list_runs(RunFilter(entity=entity, project=project, limit=MAX_SCAN_RUNS))


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(cursor.encode("ascii") + b"==").decode("ascii"))
    except (ValueError, UnicodeError) as exc:
        raise InvalidInputError("the cursor is not one this server gave") from exc
    if offset < 0:
        raise InvalidInputError("the cursor is not one this server gave")
    return offset


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode("ascii")).decode("ascii").rstrip("=")


def search_runs(
    store: AbstractStore,
    caller: Caller,
    entity: str,
    project: str,
    filters: Any,
    order: str | None,
    per_page: int,
    cursor: str | None,
    search: str = "",
) -> RunPage:
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInputError(f"per_page must be between 1 and {MAX_PER_PAGE}")
    keep = parse_filter(filters)
    order = order or "-created_at"
    field = order.lstrip("+-")
    sort = _sort_key(field)
    check_field(field)
    start = _offset(cursor)
    runs = [r for r in _project_runs(store, entity, project) if keep(r)]
    if search:
        match = _matcher(search)
        runs = [r for r in runs if match(r.name) or match(r.key.id)]
    runs.sort(key=lambda r: r.key.id)  # ties keep one order across pages
    runs.sort(key=sort, reverse=order.startswith("-"))
    page = runs[start : start + per_page]
    more = start + per_page < len(runs)
    return RunPage(page, _cursor(start + per_page) if more else None, len(runs))


def group_runs(
    store: AbstractStore, caller: Caller, entity: str, project: str, by: str, filters: Any
) -> list[RunGroup]:
    keep = parse_filter(filters)
    check_field(by)
    groups: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
    for run in _project_runs(store, entity, project):
        if not keep(run):
            continue
        docs = _docs(run)
        value = field_value(run, by, docs)
        groups.setdefault(json.dumps(value, sort_keys=True, default=str), (value, []))[1].append(
            docs["summary"]
        )
    out = []
    for value, summaries in groups.values():
        numbers: dict[str, list[float]] = {}
        for summary in summaries:
            for k, v in summary.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    numbers.setdefault(k, []).append(float(v))
        stats = {k: (min(vs), sum(vs) / len(vs), max(vs)) for k, vs in sorted(numbers.items())}
        out.append(RunGroup(value, len(summaries), stats))
    out.sort(key=lambda g: (-g.count, json.dumps(g.value, sort_keys=True, default=str)))
    return out


def _describe(values: list[Any], key: str) -> KeyDescription:
    kinds = {_kind(v) for v in values if v is not None}
    kind = kinds.pop() if len(kinds) == 1 else "other"
    numbers = [float(v) for v in values if _kind(v) == "number" and math.isfinite(float(v))]
    strings = sorted({v for v in values if isinstance(v, str)})[:MAX_DISTINCT]
    return KeyDescription(
        key,
        kind,
        min(numbers) if numbers else None,
        max(numbers) if numbers else None,
        tuple(strings),
    )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def describe_project(store: AbstractStore, caller: Caller, entity: str, project: str) -> ProjectDescription:
    runs = _project_runs(store, entity, project)
    config: dict[str, list[Any]] = {}
    summary: dict[str, list[Any]] = {}
    metrics: set[str] = set()
    for run in runs:
        docs = _docs(run)
        for k, v in docs["config"].items():
            config.setdefault(k, []).append(v)
        for k, v in docs["summary"].items():
            summary.setdefault(k, []).append(v)
        metrics.update(m.key for m in run.metrics)
    return ProjectDescription(
        entity,
        project,
        len(runs),
        tuple(_describe(vs, k) for k, vs in sorted(config.items())),
        tuple(_describe(vs, k) for k, vs in sorted(summary.items())),
        tuple(sorted(metrics)),
    )
