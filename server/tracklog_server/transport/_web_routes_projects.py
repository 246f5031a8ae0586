"""JSON routes of projects: the list, a project's description, its runs (filtered, sorted, paged),
groups, and bulk edits."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query

from tracklog.v1 import records_pb2
from tracklog_server._entities import RunFilter
from tracklog_server._errors import InvalidInputError
from tracklog_server._records import run_key
from tracklog_server.application import _bulk, _project_views

from . import _web_models as m
from ._web_json import iso, jsonable, run_json
from ._web_routes_runs import Caller, Store, key_of

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])

MAX_FILTER = 64 * 1024  # characters of a filter's JSON


def _project(entity: str, project: str) -> tuple[str, str]:
    key = run_key(records_pb2.RunRef(entity=entity, project=project, id="x"))  # validates both
    return key.entity, key.project


def _filter(text: str | None) -> Any:
    if not text:
        return None
    if len(text) > MAX_FILTER:
        raise InvalidInputError(f"a filter is at most {MAX_FILTER} characters of JSON")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"the filter is not valid JSON: {exc}") from exc


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


def _key_info(d: _project_views.KeyDescription) -> dict[str, Any]:
    return {"key": d.key, "type": d.type, "min": d.min, "max": d.max, "values": list(d.values)}


@router.get("/{entity}/{project}", response_model=m.ProjectDescription)
def describe(store: Store, caller: Caller, entity: str, project: str) -> dict[str, Any]:
    entity, project = _project(entity, project)
    d = _project_views.describe_project(store, caller, entity, project)
    latest = store.list_runs(RunFilter(entity=entity, project=project, limit=1))
    system = store.latest_system_metrics(latest[0].key) if latest else None
    return {
        "entity": d.entity,
        "project": d.project,
        "run_count": d.run_count,
        "config_keys": [_key_info(k) for k in d.config_keys],
        "summary_keys": [_key_info(k) for k in d.summary_keys],
        "metric_keys": list(d.metric_keys),
        "system_keys": [k for k, _ in system.values] if system is not None else [],
    }


@router.get("/{entity}/{project}/runs", response_model=m.RunPageOut)
def runs(
    store: Store,
    caller: Caller,
    entity: str,
    project: str,
    filter: Annotated[str | None, Query(max_length=MAX_FILTER)] = None,
    order: Annotated[str, Query(max_length=300)] = "-created_at",
    per_page: Annotated[int, Query(ge=1, le=_project_views.MAX_PER_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    search: Annotated[str, Query(max_length=_project_views.MAX_SEARCH)] = "",
) -> dict[str, Any]:
    entity, project = _project(entity, project)
    page = _project_views.search_runs(
        store, caller, entity, project, _filter(filter), order, per_page, cursor, search
    )
    return {"runs": [run_json(r) for r in page.runs], "next_cursor": page.next_cursor, "total": page.total}


@router.get("/{entity}/{project}/groups", response_model=m.GroupList)
def groups(
    store: Store,
    caller: Caller,
    entity: str,
    project: str,
    by: Annotated[str, Query(min_length=1, max_length=300)],
    filter: Annotated[str | None, Query(max_length=MAX_FILTER)] = None,
) -> dict[str, Any]:
    entity, project = _project(entity, project)
    found = _project_views.group_runs(store, caller, entity, project, by, _filter(filter))
    return {
        "groups": [
            {
                "value": jsonable(g.value),
                "count": g.count,
                "summary": {
                    k: {"min": lo, "mean": mean, "max": hi} for k, (lo, mean, hi) in g.summary.items()
                },
            }
            for g in found
        ]
    }


@router.post("/{entity}/{project}/runs/bulk", response_model=m.Changed)
def bulk(store: Store, caller: Caller, entity: str, project: str, request: m.BulkRequest) -> dict[str, int]:
    entity, project = _project(entity, project)
    keys = [key_of(entity, project, run_id) for run_id in request.ids]
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
