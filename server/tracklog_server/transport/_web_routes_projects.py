"""JSON routes of projects: the list, a project's description, its runs (filtered, sorted, paged),
groups, and bulk edits. Searches go through the application layer's ``_search`` (filters compiled to
SQL, keyset pages)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query

from tracklog.v1 import records_pb2
from tracklog_server._entities import KeyDescription, ProjectKey
from tracklog_server._errors import InvalidInputError
from tracklog_server._records import run_key
from tracklog_server.application import _bulk, _search

from . import _web_models as m
from ._web_json import iso, jsonable, run_json
from ._web_routes_runs import Caller, Store, key_of

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])

MAX_FILTER = 64 * 1024  # characters of a filter's JSON
MAX_SEARCH = 256  # characters of the search box
MAX_VALUES = 50  # distinct strings described per key
MAX_VALUE_KEYS = 50  # string keys whose values a description lists (one group query each)
_TYPES = {"int": "number", "float": "number", "str": "string", "bool": "bool"}


def _project(entity: str, project: str) -> ProjectKey:
    key = run_key(records_pb2.RunRef(entity=entity, project=project, id="x"))  # validates both
    return ProjectKey(key.entity, key.project)


def _filter(text: str | None) -> Any:
    if not text:
        return None
    if len(text) > MAX_FILTER:
        raise InvalidInputError(f"a filter is at most {MAX_FILTER} characters of JSON")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"the filter is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInputError("the filter must be a JSON object")
    return value


def _insensitive(text: str) -> str:
    """A pattern matching ``text`` in any case, in the $regex subset (no inline flags): [rR][uU][nN]."""
    out = []
    for ch in text:
        lo, up = ch.lower(), ch.upper()
        out.append(
            f"[{re.escape(lo)}{re.escape(up)}]" if lo != up and len(lo) == len(up) == 1 else re.escape(ch)
        )
    return "".join(out)


def with_search(filters: Any, search: str) -> Any:
    """``filters`` and a search box's text: the run's name or id contains it (any case), or, written
    ``/pattern/``, matches the regular expression."""
    if not search:
        return filters
    if len(search) > MAX_SEARCH:
        raise InvalidInputError(f"a search is at most {MAX_SEARCH} characters")
    if len(search) >= 2 and search.startswith("/") and search.endswith("/"):
        pattern = search[1:-1]
    else:
        pattern = _insensitive(search)
    found = {"$or": [{"name": {"$regex": pattern}}, {"id": {"$regex": pattern}}]}
    return {"$and": [filters, found]} if filters else found


@router.get("", response_model=m.ProjectList)
def projects(store: Store) -> dict[str, Any]:
    return {
        "projects": [
            {
                "entity": p.entity,
                "project": p.project,
                "run_count": p.run_count,
                "last_run_at": iso(p.last_run_at),
            }
            for p in store.list_projects()
        ]
    }


def _type(d: KeyDescription) -> str:
    kinds = {_TYPES.get(t, "other") for t, _count in d.types if t != "null"}
    return kinds.pop() if len(kinds) == 1 else "other"


def _values(store: Store, caller: Caller, project: ProjectKey, d: KeyDescription) -> list[str]:
    groups = _search.group_runs(store, caller, project, f"{d.kind}.{d.key}", None)
    return sorted(str(g.value) for g in groups if isinstance(g.value, str))[:MAX_VALUES]


@router.get("/{entity}/{project}", response_model=m.ProjectDescription)
def describe(store: Store, caller: Caller, entity: str, project: str) -> dict[str, Any]:
    key = _project(entity, project)
    d = _search.describe_project(store, caller, key)
    metric_keys, system_keys = store.project_series_keys(key)
    out: dict[str, list[dict[str, Any]]] = {"config": [], "summary": []}
    strings = 0
    for k in d.keys:
        kind = _type(k)
        values: list[str] = []
        if kind == "string" and strings < MAX_VALUE_KEYS:  # distinct values for the filter builder
            strings += 1
            values = _values(store, caller, key, k)
        out[k.kind].append(
            {"key": k.key, "type": kind, "min": jsonable(k.min), "max": jsonable(k.max), "values": values}
        )
    return {
        "entity": key.entity,
        "project": key.project,
        "run_count": d.runs,
        "config_keys": out["config"],
        "summary_keys": out["summary"],
        "metric_keys": list(metric_keys),
        "system_keys": list(system_keys),
    }


@router.get("/{entity}/{project}/runs", response_model=m.RunPageOut)
def runs(
    store: Store,
    caller: Caller,
    entity: str,
    project: str,
    filter: Annotated[str | None, Query(max_length=MAX_FILTER)] = None,
    order: Annotated[str, Query(max_length=300)] = "-created_at",
    per_page: Annotated[int, Query(ge=1, le=_search.MAX_PER_PAGE)] = _search.DEFAULT_PER_PAGE,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    search: Annotated[str, Query(max_length=MAX_SEARCH)] = "",
) -> dict[str, Any]:
    """A page of the project's runs: ``filter`` as issue 10's (MongoDB-style JSON), ``order`` any
    field with +/-, ``search`` the name or id (text, or /regex/), then ``cursor`` from the last page."""
    key = _project(entity, project)
    filters = with_search(_filter(filter), search)
    page = _search.search_runs(store, caller, key, filters, order, per_page, cursor or None)
    return {
        "runs": [run_json(r) for r in page.runs],
        "next_cursor": page.next_cursor or None,
        "total": page.total,
    }


@router.get("/{entity}/{project}/groups", response_model=m.GroupList)
def groups(
    store: Store,
    caller: Caller,
    entity: str,
    project: str,
    by: Annotated[str, Query(min_length=1, max_length=2000)],
    filter: Annotated[str | None, Query(max_length=MAX_FILTER)] = None,
) -> dict[str, Any]:
    key = _project(entity, project)
    found = _search.group_runs(store, caller, key, by, _filter(filter))
    return {
        "groups": [
            {
                "value": jsonable(g.value),
                "count": g.count,
                "summary": {
                    m.key: {"min": jsonable(m.min), "mean": jsonable(m.mean), "max": jsonable(m.max)}
                    for m in g.metrics
                },
            }
            for g in found
        ]
    }


@router.post("/{entity}/{project}/runs/bulk", response_model=m.Changed)
def bulk(store: Store, caller: Caller, entity: str, project: str, request: m.BulkRequest) -> dict[str, int]:
    key = _project(entity, project)
    keys = [key_of(key.entity, key.project, run_id) for run_id in request.ids]
    changed = _bulk.bulk_edit(
        store,
        caller,
        keys,
        request.action,
        tags=request.tags,
        group=request.group,
        delete_files=request.delete_files,
    )
    return {"changed": changed}
