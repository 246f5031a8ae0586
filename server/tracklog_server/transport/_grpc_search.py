"""The search RPCs of ``tracklog.v1.Store`` (SearchRuns, GroupRuns, DescribeProject,
DeleteRunsByFilter): requests checked and translated, the application layer called, entities turned
into messages. Nothing is decided here."""

from __future__ import annotations

import json
from typing import Any

from tracklog._history import dumps
from tracklog._refs import validate_part
from tracklog.v1 import records_pb2, store_pb2
from tracklog_server._entities import ProjectDescription, ProjectKey, RunGroup
from tracklog_server._errors import InvalidInputError
from tracklog_server._limits import MAX_JSON_DOC
from tracklog_server.application import _search
from tracklog_server.application._runs import ANONYMOUS
from tracklog_server.storage._store import AbstractStore

from ._convert import run_ref, run_view


def project_key(entity: str, project: str) -> ProjectKey:
    try:
        return ProjectKey(validate_part("entity", entity), validate_part("project", project))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(str(exc)) from exc


def filters(text: str) -> dict[str, Any] | None:
    """The request's filters_json: a JSON object, or "" for none."""
    if not text:
        return None
    if len(text) > MAX_JSON_DOC:
        raise InvalidInputError(f"filters_json is {len(text)} characters; the limit is {MAX_JSON_DOC}")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInputError("filters_json is not valid JSON (or nests too deeply)") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"filters_json must be a JSON object, not {type(value).__name__}")
    return value


def search_runs(store: AbstractStore, request: store_pb2.SearchRunsRequest) -> store_pb2.SearchRunsResponse:
    page = _search.search_runs(
        store,
        ANONYMOUS,
        project_key(request.entity, request.project),
        filters(request.filters_json),
        request.order or None,
        request.per_page or _search.DEFAULT_PER_PAGE,
        request.cursor or None,
    )
    return store_pb2.SearchRunsResponse(
        runs=[run_view(r) for r in page.runs], next_cursor=page.next_cursor, total=page.total
    )


def group_runs(store: AbstractStore, request: store_pb2.GroupRunsRequest) -> store_pb2.GroupRunsResponse:
    groups = _search.group_runs(
        store,
        ANONYMOUS,
        project_key(request.entity, request.project),
        request.by,
        filters(request.filters_json),
    )
    return store_pb2.GroupRunsResponse(groups=[_group(g) for g in groups])


def _group(group: RunGroup) -> store_pb2.RunGroup:
    return store_pb2.RunGroup(
        value_json=dumps(group.value),
        type=group.type,
        count=group.count,
        metrics=[
            store_pb2.GroupMetric(key=m.key, count=m.count, min=m.min, mean=m.mean, max=m.max)
            for m in group.metrics
        ],
    )


def describe_project(
    store: AbstractStore, request: store_pb2.DescribeProjectRequest
) -> store_pb2.ProjectDescription:
    found = _search.describe_project(store, ANONYMOUS, project_key(request.entity, request.project))
    return description(found)


def description(found: ProjectDescription) -> store_pb2.ProjectDescription:
    out = store_pb2.ProjectDescription(
        entity=found.project.entity, project=found.project.project, runs=found.runs
    )
    for k in found.keys:
        item = out.keys.add(kind=k.kind, key=k.key, count=k.count)
        item.types.extend(store_pb2.TypeCount(type=t, count=c) for t, c in k.types)
        if k.min is not None:
            item.min = k.min
        if k.max is not None:
            item.max = k.max
    return out


def delete_by_filter(
    store: AbstractStore, request: store_pb2.DeleteRunsByFilterRequest
) -> store_pb2.DeleteRunsByFilterResponse:
    keys = _search.delete_by_filter(
        store,
        ANONYMOUS,
        project_key(request.entity, request.project),
        filters(request.filters_json),
        dry_run=request.dry_run,
        delete_files=request.delete_files,
    )
    refs: list[records_pb2.RunRef] = [run_ref(k) for k in keys]
    return store_pb2.DeleteRunsByFilterResponse(runs=refs, deleted=not request.dry_run and bool(keys))
