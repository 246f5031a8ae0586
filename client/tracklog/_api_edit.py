"""Edits of many runs in one call: ``Api.tag_runs`` (tags added and removed) and ``Api.move_runs``
(a group, a job type). Each is one UpdateRuns request, applied by the store all or nothing; as with
``ApiRun.update()``, per field the later write wins against the runs' training processes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from tracklog import _rules
from tracklog._api_paths import parse_run_path
from tracklog._errors import UsageError
from tracklog.v1 import records_pb2, store_pb2

if TYPE_CHECKING:
    from tracklog._api import Api, ApiRun


def run_refs(runs: Any) -> list[records_pb2.RunRef]:
    """RunRefs of ``runs``: ApiRun objects or run paths (any form ``Api.run`` takes), or one of them."""
    from tracklog._api import ApiRun

    if isinstance(runs, str | ApiRun):
        runs = [runs]
    if not isinstance(runs, Iterable):
        raise UsageError(f"runs must be ApiRun objects or run paths, not {type(runs).__name__}")
    refs = []
    for run in runs:
        if isinstance(run, ApiRun):
            refs.append(run._view.ref)
        else:
            p = parse_run_path(run)
            refs.append(records_pb2.RunRef(entity=p.entity, project=p.project, id=p.id))
    if not refs:
        raise UsageError("no runs given")
    return refs


def _tags(what: str, tags: Sequence[str]) -> list[str]:
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise UsageError(f"{what} must be a list of str")
    for tag in tags:
        problem = "is empty" if not tag else _rules.text_problem(tag)
        if problem is not None:
            raise UsageError(f"tag {_rules.short(tag)} {problem}")
    return list(dict.fromkeys(tags))


def _text(what: str, value: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{what} must be a str, not {type(value).__name__}")
    problem = _rules.text_problem(value)
    if problem is not None:
        raise UsageError(f"{what} {_rules.short(value)} {problem}")
    return value


def update_runs(api: Api, runs: Any, changes: store_pb2.RunChanges, what: str) -> int:
    refs = run_refs(runs)
    request = store_pb2.UpdateRunsRequest(refs=refs, changes=changes)
    response = api._mutate("UpdateRuns", request, f"{what} {len(refs)} run{'s' if len(refs) != 1 else ''}")
    return int(response.updated)


def tag_runs(api: Api, runs: Any, add: Sequence[str] = (), remove: Sequence[str] = ()) -> int:
    add, remove = _tags("add", add), _tags("remove", remove)
    if not add and not remove:
        raise UsageError("tag_runs() needs tags to add or remove")
    changes = store_pb2.RunChanges(add_tags=add, remove_tags=remove)
    return update_runs(api, runs, changes, "tagging")


def move_runs(api: Api, runs: Any, group: str | None = None, job_type: str | None = None) -> int:
    if group is None and job_type is None:
        raise UsageError("move_runs() needs a group or a job_type")
    changes = store_pb2.RunChanges()
    if group is not None:
        changes.group = _text("group", group)
    if job_type is not None:
        changes.job_type = _text("job_type", job_type)
    return update_runs(api, runs, changes, "moving")


class RunDict(dict[str, Any]):
    """``ApiRun.config`` and ``ApiRun.summary``: a plain dict (set, delete, nest, ``update({...})``)
    whose changes ``run.update()`` saves. As in wandb, ``run.summary.update()`` with no arguments
    saves the run too, so that an edit is never silently left unsaved by that habit."""

    __slots__ = ("_run",)

    def __init__(self, run: ApiRun, items: dict[str, Any]) -> None:
        super().__init__(items)
        self._run = run

    def update(self, *args: Any, **kwargs: Any) -> None:
        if args or kwargs:
            super().update(*args, **kwargs)
        else:
            self._run.update()
