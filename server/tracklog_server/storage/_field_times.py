"""Edits of a run's mutable fields meet in one result: per field, the later write wins.

Two writers edit a run: its training process (``run.name = ...``, ``run.tags = ...``, config and
summary items; records that may reach the store long after they were made, e.g. from an offline
spool) and the API (``ApiRun.update()``, the CLI). Applying them in arrival order would let a late
record undo a newer API edit, so each write carries a time: the training process's clock when it
made the change (``write_time`` of RunUpdate, ConfigUpdate and SummaryUpdate), the store's clock
for an API edit. The run keeps, in ``runs.field_times`` (JSON), the time of the write that won for
each field, and for tags, config and summary per item::

    {"name": t, "notes": t, "group": t, "job_type": t,
     "tags": {"tag": t}, "config": {"key": t}, "summary": {"key": t}}

Invariants:

* A write at time ``t`` applies iff ``t`` is at or after the field's (item's) time; between equal
  times the one applied later wins (one writer's records are applied in its order).
* A write time is never later than the store's clock when it is applied (``write_time``): a client
  whose clock runs ahead cannot freeze a field against the API's later edits.
* Tags are added and removed, never replaced; a removed tag or key keeps its time, so an older add
  arriving late does not bring it back. Past ``MAX_ITEM_TIMES`` items of one kind the oldest times
  are forgotten (a forgotten item takes any write, as before it had a time).
* A field without a time (a run from before these times, or set when the run was created) takes any
  write.
* The stored dicts are replaced, never changed in place: ``LockedRun.save`` tells what changed by
  comparing with a shallow copy taken at load.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tracklog._history import dumps
from tracklog_server._errors import InvalidInputError
from tracklog_server._limits import MAX_JSON_DOC, MAX_TAGS

if TYPE_CHECKING:
    from ._ingest import LockedRun

SCALARS = ("name", "notes", "group", "job_type")
MAX_ITEM_TIMES = 10_000  # per kind (tags, config, summary): bounds the JSON loaded with the run


def write_time(claimed: float, now: float) -> float:
    """The time a write counts at: the writer's ``claimed`` time (0: unknown, then ``now``, its
    arrival), never later than ``now``."""
    if not claimed or not math.isfinite(claimed) or claimed < 0:
        return now
    return min(claimed, now)


@dataclass(frozen=True, slots=True)
class Edit:
    """One write to a run's mutable fields; None or empty changes nothing."""

    name: str | None = None
    notes: str | None = None
    group: str | None = None
    job_type: str | None = None
    add_tags: Sequence[str] = ()
    remove_tags: Sequence[str] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    config_removed: Sequence[str] = ()
    summary: Mapping[str, Any] = field(default_factory=dict)
    summary_removed: Sequence[str] = ()


class _Times:
    """The run's field times being edited: copied on load, written back whole."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = dict(doc)
        self.changed = False

    def claim(self, name: str, t: float) -> bool:
        if t < self.doc.get(name, -math.inf):
            return False
        self.doc[name] = t
        self.changed = True
        return True

    def claim_items(self, kind: str, items: Iterable[str], t: float) -> set[str]:
        """The items a write at ``t`` wins, their times set to ``t``."""
        times: dict[str, float] = dict(self.doc.get(kind) or {})
        won = {item for item in items if t >= times.get(item, -math.inf)}
        if not won:
            return won
        for item in won:
            times.pop(item, None)  # re-inserted last: dict order is the order of the times set
            times[item] = t
        if len(times) > MAX_ITEM_TIMES:
            # Forget the oldest. Insertion order is near time order, but not exactly (a late record
            # with an old time is inserted last), so sort.
            keep = sorted(times.items(), key=lambda kv: kv[1])[len(times) - MAX_ITEM_TIMES :]
            times = dict(keep)
        self.doc[kind] = times
        self.changed = True
        return won


def apply_edit(run: LockedRun, edit: Edit, t: float) -> None:
    """Applies the parts of ``edit`` that win against the run's field times, as written at ``t``.
    Raises InvalidInputError (too many tags, a config or summary over its limit) before changing
    the run."""
    times = _Times(run.field_times)
    values: dict[str, str] = {}
    for name in SCALARS:
        value = getattr(edit, name)
        if value is not None and times.claim(name, t):
            values[name] = value
    if values.get("name") == "":
        values["name"] = run.run_id  # an empty name falls back to the id, as at creation
    tags = run.tags
    if edit.add_tags or edit.remove_tags:
        remove = set(edit.remove_tags) - set(edit.add_tags)  # both: the add wins, as before times
        add = list(dict.fromkeys(edit.add_tags))
        won = times.claim_items("tags", [*add, *remove], t)
        gone = remove & won
        tags = [tag for tag in run.tags if tag not in gone]
        tags.extend(tag for tag in add if tag in won and tag not in tags)
        if len(tags) > MAX_TAGS:
            raise InvalidInputError(f"the run would have {len(tags)} tags; the limit is {MAX_TAGS}")
    config_json = run.config_json
    if edit.config or edit.config_removed:
        config = json.loads(run.config_json)
        for k in times.claim_items("config", edit.config_removed, t):
            config.pop(k, None)
        won = times.claim_items("config", edit.config, t)
        config.update((k, v) for k, v in edit.config.items() if k in won)
        config_json = dumps_doc(config, "config")
    summary_json, summary_removed = run.summary_json, run.summary_removed
    if edit.summary or edit.summary_removed:
        # Explicit values override logged ones; a removed key hides its logged value until the key
        # is logged again.
        summary = json.loads(run.summary_json)
        won = times.claim_items("summary", edit.summary, t)
        summary.update((k, v) for k, v in edit.summary.items() if k in won)
        removed = [k for k in run.summary_removed if k not in won]
        for k in times.claim_items("summary", edit.summary_removed, t):
            summary.pop(k, None)
            if k not in removed:
                removed.append(k)
        summary_json, summary_removed = dumps_doc(summary, "summary"), removed
    # Nothing failed: write everything back.
    for name, value in values.items():
        setattr(run, name, value)
    run.tags, run.config_json = tags, config_json
    run.summary_json, run.summary_removed = summary_json, summary_removed
    if times.changed:
        run.field_times = times.doc


def dumps_doc(doc: dict[str, Any], what: str) -> str:
    text = dumps(doc)
    if len(text) > MAX_JSON_DOC:
        raise InvalidInputError(f"{what} would be {len(text)} characters; the limit is {MAX_JSON_DOC}")
    return text
