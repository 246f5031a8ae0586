"""Edits of many runs of one project at once, as the web app's table asks: tag, untag, move to a group,
delete. Each run's edit is its own store call (an edit takes the run's lock); a delete is one call, all
or nothing. An unknown or deleted run fails the request before any run is changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from tracklog_server._entities import RunChanges, RunKey
from tracklog_server._errors import InvalidInputError
from tracklog_server._validate import check_text
from tracklog_server.storage._store import AbstractStore

from ._runs import MAX_RUNS_PER_DELETE, Caller, delete_runs, update_run

Action = Literal["tag", "untag", "group", "delete"]


def bulk_edit(
    store: AbstractStore,
    caller: Caller,
    keys: Sequence[RunKey],
    action: Action,
    *,
    tags: Sequence[str] = (),
    group: str | None = None,
    delete_files: bool = False,
) -> int:
    """Applies ``action`` to every run of ``keys``; returns how many runs it changed."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise InvalidInputError("no runs given")
    if len(keys) > MAX_RUNS_PER_DELETE:
        raise InvalidInputError(f"{len(keys)} runs in one request; the limit is {MAX_RUNS_PER_DELETE}")
    if action == "delete":
        return delete_runs(store, caller, keys, delete_files=delete_files)
    if action in ("tag", "untag") and not tags:
        raise InvalidInputError(f"{action} needs at least one tag")
    for tag in tags:
        if not tag:
            raise InvalidInputError("a tag is empty")
        check_text(tag, f"tag {tag[:40]!r}")
    if action == "group" and group is None:
        raise InvalidInputError("group needs the group's name (empty: no group)")
    for key in keys:  # every run exists and is not deleted before anything changes
        store.get_run(key)
    if group is not None:
        check_text(group, "group")
    if action == "tag":
        changes = RunChanges(add_tags=tuple(tags))
    elif action == "untag":
        changes = RunChanges(remove_tags=tuple(tags))
    else:
        changes = RunChanges(group=group)
    for key in keys:
        update_run(store, caller, key, changes)
    return len(keys)
