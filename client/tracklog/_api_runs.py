"""``Api().runs(...)``: a project's runs as a lazy sequence fetched a page at a time, its groups, and a
project's description (``Api().project(...)``).

Pages are fetched by keyset cursor, so walking a project while runs are being added never repeats
or skips a run that was there from the start; ``len()`` is the number of matching runs the store
reported with the latest page fetched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import grpc

from tracklog import _history, _settings
from tracklog._errors import UsageError
from tracklog.v1 import store_pb2

if TYPE_CHECKING:
    from tracklog._api import Api, ApiRun

MAX_PER_PAGE = 1000


def project_path(path: str, what: str = "runs()") -> tuple[str, str]:
    """``entity/project`` (or ``project`` of the default entity) as (entity, project)."""
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) == 1:
        return _settings.default_entity(), parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise UsageError(f"{what} path {path!r} must look like 'entity/project'")


def filters_json(filters: Mapping[str, Any] | None) -> str:
    if filters is None:
        return ""
    if not isinstance(filters, Mapping):
        raise UsageError(f"filters must be a dict, not {type(filters).__name__}")
    try:
        return json.dumps(filters)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"filters cannot be sent as JSON: {exc}") from exc


@dataclass(frozen=True)
class GroupStats:
    """A numeric summary key over a group's runs that have it as a number."""

    count: int
    min: float
    mean: float
    max: float


@dataclass(frozen=True)
class RunGroup:
    """Runs sharing one value of the grouping key; ``type`` is "" for the runs without the key."""

    value: Any
    type: str
    count: int
    summary: dict[str, GroupStats]


@dataclass(frozen=True)
class KeyInfo:
    """A config or summary key of a project: runs that have it, as which types, its numeric range."""

    kind: str  # "config" or "summary"
    key: str
    count: int
    types: dict[str, int]
    min: float | None
    max: float | None


@dataclass(frozen=True)
class Project:
    """``Api().project(path)``: how many runs, and the config and summary keys they hold."""

    entity: str
    project: str
    runs: int
    keys: list[KeyInfo]

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}"

    def config_keys(self) -> list[KeyInfo]:
        return [k for k in self.keys if k.kind == "config"]

    def summary_keys(self) -> list[KeyInfo]:
        return [k for k in self.keys if k.kind == "summary"]


class Runs(Sequence["ApiRun"]):
    """The runs of a project matching a filter, in order: indexable, ``len()``, iterable; pages are
    fetched from the store when first needed."""

    def __init__(
        self,
        api: Api,
        path: str,
        filters: Mapping[str, Any] | None = None,
        order: str | None = "-created_at",
        per_page: int = 50,
        limit: int = 0,
    ) -> None:
        if not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
            raise UsageError(f"per_page is {per_page!r}; it must be 1 to {MAX_PER_PAGE}")
        if order is not None and not isinstance(order, str):
            raise UsageError(f"order must be a string such as '-created_at', not {order!r}")
        self._api = api
        self.entity, self.project = project_path(path)
        self.filters = dict(filters) if filters else {}
        self.order = order or "-created_at"
        self.per_page = per_page
        self.limit = max(0, limit)
        self._filters_json = filters_json(filters)
        self._loaded: list[ApiRun] = []
        self._cursor = ""
        self._total: int | None = None
        self._done = False

    def _fetch(self) -> bool:
        """Fetches the next page; False when there is none."""
        from tracklog._api import ApiRun, translate

        if self._done:
            return False
        request = store_pb2.SearchRunsRequest(
            entity=self.entity,
            project=self.project,
            filters_json=self._filters_json,
            order=self.order,
            per_page=self.per_page,
            cursor=self._cursor,
        )
        try:
            response = self._api._stub.SearchRuns(request, timeout=self._api.timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise UsageError(f"runs of {self.entity}/{self.project}: {exc.details()}") from exc
            raise translate(exc, f"searching runs of {self.entity}/{self.project}") from exc
        self._loaded.extend(ApiRun(self._api, view) for view in response.runs)
        self._total = int(response.total)
        self._cursor = response.next_cursor
        self._done = not response.next_cursor or bool(self.limit and len(self._loaded) >= self.limit)
        return bool(response.runs)

    def __len__(self) -> int:
        if self._total is None:
            self._fetch()
        total = self._total or 0
        if self._done:  # everything is here: the count of what was fetched is exact
            total = len(self._loaded)
        return min(total, self.limit) if self.limit else total

    @overload
    def __getitem__(self, index: int) -> ApiRun: ...
    @overload
    def __getitem__(self, index: slice) -> list[ApiRun]: ...
    def __getitem__(self, index: int | slice) -> ApiRun | list[ApiRun]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if index < 0 or (self.limit and index >= self.limit):
            raise IndexError("run index out of range")
        while index >= len(self._loaded) and self._fetch():
            pass
        if index >= len(self._loaded):
            raise IndexError("run index out of range")
        return self._loaded[index]

    def __iter__(self) -> Iterator[ApiRun]:
        i = 0
        while True:
            while i < len(self._loaded):
                if self.limit and i >= self.limit:
                    return
                yield self._loaded[i]
                i += 1
            if not self._fetch() and i >= len(self._loaded):
                return

    def __bool__(self) -> bool:
        return len(self) > 0

    def __eq__(self, other: object) -> bool:
        """Equal to a list (or tuple) of the same runs, as ``runs()`` returned before it was lazy."""
        if isinstance(other, Runs | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable as pages arrive, like a list

    def group_by(self, key: str) -> list[RunGroup]:
        """These runs (the same filter) grouped by ``key`` (``config.optimizer``, ``state`` ...):
        one group per value, runs without the key last, each with its run count and, per numeric
        summary key, count/min/mean/max."""
        from tracklog._api import translate

        request = store_pb2.GroupRunsRequest(
            entity=self.entity, project=self.project, filters_json=self._filters_json, by=key
        )
        try:
            response = self._api._stub.GroupRuns(request, timeout=self._api.timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise UsageError(f"group_by({key!r}): {exc.details()}") from exc
            raise translate(exc, f"grouping runs of {self.entity}/{self.project}") from exc
        return [
            RunGroup(
                value=json.loads(g.value_json) if g.value_json else None,
                type=g.type,
                count=int(g.count),
                summary={m.key: GroupStats(int(m.count), m.min, m.mean, m.max) for m in g.metrics},
            )
            for g in response.groups
        ]

    def __repr__(self) -> str:
        shown = f", filters={self.filters!r}" if self.filters else ""
        return f"<Runs {self.entity}/{self.project}{shown} order={self.order!r}>"


class LoadedRuns(Runs):
    """Runs already fetched in full (``Api().runs()`` of every project, which pages by offset)."""

    def __init__(self, api: Api, runs: list[ApiRun]) -> None:
        self._api = api
        self.entity = self.project = ""
        self.filters, self.order, self.per_page, self.limit = {}, "-created_at", len(runs) or 1, 0
        self._filters_json = ""
        self._loaded = runs
        self._cursor = ""
        self._total = len(runs)
        self._done = True

    def group_by(self, key: str) -> list[RunGroup]:
        raise UsageError("group_by needs the runs of one project: Api().runs('entity/project')")

    def __repr__(self) -> str:
        return f"<Runs of every project: {len(self._loaded)}>"


def project(api: Api, path: str) -> Project:
    from tracklog._api import translate

    entity, name = project_path(path, "project()")
    request = store_pb2.DescribeProjectRequest(entity=entity, project=name)
    try:
        response = api._stub.DescribeProject(request, timeout=api.timeout)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise UsageError(f"project({path!r}): {exc.details()}") from exc
        raise translate(exc, f"describing project {entity}/{name}") from exc
    keys = [
        KeyInfo(
            kind=k.kind,
            key=k.key,
            count=int(k.count),
            types={t.type: int(t.count) for t in k.types},
            min=k.min if k.HasField("min") else None,
            max=k.max if k.HasField("max") else None,
        )
        for k in response.keys
    ]
    return Project(response.entity, response.project, int(response.runs), keys)


def delete_by_filter(
    api: Api, path: str, filters: Mapping[str, Any], *, dry_run: bool, delete_files: bool
) -> list[str]:
    """Deletes the runs of ``path`` matching ``filters`` (all or nothing); returns their paths. With
    ``dry_run`` nothing is deleted: the paths are what would go."""
    entity, name = project_path(path, "delete_runs()")
    if not filters:
        raise UsageError('delete_runs(filters=...) needs a filter; every run: {"id": {"$exists": True}}')
    request = store_pb2.DeleteRunsByFilterRequest(
        entity=entity,
        project=name,
        filters_json=filters_json(filters),
        dry_run=dry_run,
        delete_files=delete_files,
    )
    response = api._mutate("DeleteRunsByFilter", request, f"deleting runs of {entity}/{name} by filter")
    return [f"{r.entity}/{r.project}/{r.id}" for r in response.runs]


def group_value_text(value: Any) -> str:
    """A group's value as a table shows it."""
    return _history.dumps(value) if not isinstance(value, str) else value
