"""Use cases that read many runs: search (filter, order, keyset pages), group, describe a project,
and delete by filter.

A cursor is opaque to callers: the sort key of the last run of a page (rank, value, id) and the
order it belongs to, so a cursor used with another order is refused instead of skipping runs. Paging
by key, not offset, means a page never repeats or skips a run because runs were added meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from tracklog_server._entities import ProjectDescription, ProjectKey, RunGroup, RunKey, RunPage
from tracklog_server._errors import InvalidInputError
from tracklog_server._filter_ast import Order, SortKey
from tracklog_server.storage._store import AbstractStore

from ._filters import parse_field, parse_filters, parse_order
from ._runs import MAX_RUNS_PER_DELETE, Caller

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 1000
QUERY_TIMEOUT = 10.0  # seconds a search or group may run
MAX_PAGE_CHARS = 24 * 1024 * 1024  # of run documents per page: well inside one 64 MiB message


def search_runs(
    store: AbstractStore,
    caller: Caller,
    project: ProjectKey,
    filters: Mapping[str, Any] | None,
    order: str | None,
    per_page: int = DEFAULT_PER_PAGE,
    cursor: str | None = None,
) -> RunPage:
    """One page of the project's runs matching ``filters`` in ``order``, after ``cursor``."""
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInputError(f"per_page is {per_page}; it must be 1 to {MAX_PER_PAGE}")
    where = parse_filters(filters)
    parsed = parse_order(order)
    after = decode_cursor(cursor, parsed) if cursor else None
    found, total = store.search_runs(project, where, parsed, per_page + 1, after, QUERY_TIMEOUT)
    more = len(found) > per_page
    found = found[:per_page]
    # A page ends early rather than outgrow one message (each run's documents may be 16 MiB): the
    # cursor then points after its last run, so the rest comes with the next page.
    size = 0
    for i, (run, _key) in enumerate(found):
        size += len(run.config_json) + len(run.summary_json) + len(run.metadata_json) + 1024
        if size > MAX_PAGE_CHARS and i > 0:
            found, more = found[:i], True
            break
    next_cursor = encode_cursor(found[-1][1], parsed) if more and found else ""
    return RunPage(tuple(run for run, _key in found), next_cursor, total)


def group_runs(
    store: AbstractStore, caller: Caller, project: ProjectKey, by: str, filters: Mapping[str, Any] | None
) -> list[RunGroup]:
    """The matching runs grouped by their value of ``by`` (``config.optimizer``, ``state`` ...)."""
    return store.group_runs(project, parse_filters(filters), parse_field(by, "group_by"), QUERY_TIMEOUT)


def describe_project(store: AbstractStore, caller: Caller, project: ProjectKey) -> ProjectDescription:
    return store.describe_project(project)


def delete_by_filter(
    store: AbstractStore,
    caller: Caller,
    project: ProjectKey,
    filters: Mapping[str, Any] | None,
    *,
    dry_run: bool,
    delete_files: bool = False,
) -> list[RunKey]:
    """Deletes the project's runs matching ``filters`` (all or nothing) and returns them; with
    ``dry_run`` only returns what would go. An empty filter is refused: deleting a whole project
    takes saying so ({"id": {"$exists": true}})."""
    if not filters:
        raise InvalidInputError(
            'deleting by filter needs a filter; to delete every run, say {"id": {"$exists": true}}'
        )
    where = parse_filters(filters)
    found, total = store.search_runs(
        project, where, parse_order("+created_at"), MAX_RUNS_PER_DELETE, None, QUERY_TIMEOUT
    )
    if total > MAX_RUNS_PER_DELETE:
        raise InvalidInputError(
            f"the filter matches {total} runs; one delete takes at most {MAX_RUNS_PER_DELETE}: narrow it"
        )
    keys = [run.key for run, _key in found]
    if not dry_run and keys:
        store.delete_runs(keys, delete_files)
    return keys


def encode_cursor(key: SortKey, order: Order) -> str:
    doc = [str(order), key.rank, key.num, key.text, key.run_id]
    # Python's JSON keeps +-Infinity (a sort value may be one); floats survive it exactly.
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, order: Order) -> SortKey:
    """The sort key in ``cursor``; InvalidInputError for anything this server did not hand out for
    this order."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        label, rank, num, text, run_id = doc
        key = SortKey(int(rank), float(num), str(text), str(run_id))
        valid = isinstance(label, str) and isinstance(rank, int) and isinstance(num, int | float)
        valid = valid and isinstance(text, str) and isinstance(run_id, str)
    except (ValueError, TypeError, UnicodeError, binascii.Error, RecursionError):
        raise InvalidInputError("the cursor is not one this server handed out") from None
    if not valid:
        raise InvalidInputError("the cursor is not one this server handed out")
    if label != str(order):
        raise InvalidInputError(f"the cursor belongs to order {label!r}, not {str(order)!r}")
    return key
