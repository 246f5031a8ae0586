"""``run_values``: each run's config, summary, tags and user as typed rows, so that filters and sorts
run inside the database, on an index, instead of decoding JSON documents in Python.

Invariants:

* The JSON documents (``runs.config_json``, ``summary_json`` with ``metric_summaries``, ``tags``,
  ``metadata_json``) stay the source of what a run holds; ``run_values`` is derived from them and
  written in the same transaction as any change to them (``LockedRun.save`` calls :func:`sync`),
  so the two never disagree after a commit. A change writes the difference between the values
  derived before and after it, which relies on exactly this.
* One row per (run, kind, key). Config and summary keys are flattened with dots (``{"a": {"b": 1}}``
  is key ``a.b``); a tag is a row of kind TAG whose key and text are the tag; the user is one row of
  kind USER. The summary is what a run shows: each logged key's last value, overridden by explicit
  summary values, without removed keys.
* ``vtype`` says how to read ``num``/``text``: int and float in ``num`` (NaN as NULL, so it never
  compares; +-Inf as themselves), bools in ``num`` as 1/0, strings in ``text``; null and other
  values (lists, empty objects, strings no database can hold) have neither and never compare.
* Keys longer than MAX_KEY_BYTES in UTF-8 (an index entry has a size limit) and keys past the first
  MAX_VALUES of a kind (in key order) are not stored: such a key cannot be filtered on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, cast

from sqlalchemy import Table, and_, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from tracklog_server._filter_ast import ValueType

from ._models import MetricSummaryRow, RunValueRow

KIND_CONFIG, KIND_SUMMARY, KIND_TAG, KIND_USER = 1, 2, 3, 4
MAX_KEY_BYTES = 2048
MAX_VALUES = 10_000  # per run and kind
USER_METADATA_KEY = "username"  # the metadata item naming the user who ran the training process

Value = tuple[str, float | None, str | None]  # (vtype, num, text)

# Fields of the run row each kind is derived from: a change to one of them re-derives that kind.
# history_rows/last_step change with every history batch, i.e. whenever logged values may have.
_SOURCES = {
    KIND_CONFIG: frozenset({"config_json"}),
    KIND_SUMMARY: frozenset({"summary_json", "summary_removed", "history_rows", "last_step"}),
    KIND_TAG: frozenset({"tags"}),
    KIND_USER: frozenset({"metadata_json"}),
}


class RunDocs(Protocol):
    """What :func:`sync` reads of a run (``LockedRun`` has it)."""

    pk: int
    config_json: str
    summary_json: str
    summary_removed: list[str]
    tags: list[str]
    metadata_json: str


def scalar(value: Any) -> Value:
    """How one leaf value is stored."""
    if isinstance(value, bool):
        return (ValueType.BOOL, 1.0 if value else 0.0, None)
    if isinstance(value, int):
        try:
            return (ValueType.INT, float(value), None)
        except OverflowError:  # an integer beyond float range: kept, but it never compares
            return (ValueType.OTHER, None, None)
    if isinstance(value, float):
        return (ValueType.FLOAT, None if math.isnan(value) else value, None)
    if isinstance(value, str):
        if "\x00" in value or not _encodable(value):  # no database text column can hold it
            return (ValueType.OTHER, None, None)
        return (ValueType.STR, None, value)
    if value is None:
        return (ValueType.NULL, None, None)
    return (ValueType.OTHER, None, None)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def flatten(doc: Mapping[str, Any]) -> dict[str, Value]:
    """Leaf values of a JSON document by dotted key (an empty object is a leaf of type other)."""
    out: dict[str, Value] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, Mapping) and v:
                walk(v, key + ".")
            else:
                out[key] = scalar(v)

    walk(doc, "")
    return out


def summary_of(
    metric_rows: Iterable[Mapping[str, Any]], summary_json: str, removed: Iterable[str]
) -> dict[str, Any]:
    """A run's summary as readers see it (``_sql_store._to_run`` builds the same): each logged key's
    last value (ints as ints), then the explicit values over them, without removed keys."""
    hidden = set(removed)
    summary: dict[str, Any] = {}
    for m in metric_rows:
        key = m["key"]
        if key in hidden:
            continue
        if m["last_json"] is not None:
            summary[key] = json.loads(m["last_json"])
        elif m["has_num"]:
            last = math.nan if m["num_last"] is None else m["num_last"]
            summary[key] = int(last) if m["num_is_int"] and math.isfinite(last) else last
    summary.update(json.loads(summary_json))
    return summary


def values_of(
    kind: int, run: RunDocs, metric_rows: Iterable[Mapping[str, Any]] | None = None
) -> dict[str, Value]:
    """The rows of ``kind`` the run should have (the summary needs its metric summary rows)."""
    if kind == KIND_CONFIG:
        values = flatten(json.loads(run.config_json))
    elif kind == KIND_SUMMARY:
        values = flatten(summary_of(metric_rows or (), run.summary_json, run.summary_removed))
    elif kind == KIND_TAG:
        values = {tag: (ValueType.STR, None, tag) for tag in run.tags}
    else:
        user = json.loads(run.metadata_json).get(USER_METADATA_KEY)
        values = {"user": scalar(user)} if isinstance(user, str) and user else {}
    kept = sorted(k for k in values if len(k.encode("utf-8", "replace")) <= MAX_KEY_BYTES)
    return {k: values[k] for k in kept[:MAX_VALUES]}


class _Docs:
    """A run's documents as they were before a change (from ``LockedRun``'s loaded values)."""

    def __init__(self, pk: int, fields: Mapping[str, Any]) -> None:
        self.pk = pk
        self.config_json: str = fields["config_json"]
        self.summary_json: str = fields["summary_json"]
        self.summary_removed: list[str] = fields["summary_removed"]
        self.tags: list[str] = fields["tags"]
        self.metadata_json: str = fields["metadata_json"]


MetricRows = Sequence[Mapping[str, Any]]


def sync(
    conn: Connection,
    run: RunDocs,
    before: Mapping[str, Any] | None,
    metrics: tuple[MetricRows, MetricRows] | None = None,
) -> None:
    """Brings the run's ``run_values`` in step with a change of the run row: ``before`` holds the
    row's fields as they were (None: a new run, which has no rows yet), ``metrics`` the run's metric
    summary rows before and after the change when it logged history (else they are read once, if
    needed). Old and new values are both derived here and only the difference is written, so a
    history batch costs one UPDATE of the keys whose last value moved, and no SELECT."""
    for kind, sources in _SOURCES.items():
        if before is not None and not any(before[f] != getattr(run, f) for f in sources):
            continue
        old_rows: MetricRows | None = None
        new_rows: MetricRows | None = None
        if kind == KIND_SUMMARY:
            if metrics is None:
                found = conn.execute(_SELECT_METRICS, {"b_run_pk": run.pk}).mappings()
                old_rows = new_rows = [dict(m) for m in found]
            else:
                old_rows, new_rows = metrics
        old = {} if before is None else values_of(kind, _Docs(run.pk, before), old_rows)
        write(conn, run.pk, kind, old, values_of(kind, run, new_rows))


def write(
    conn: Connection, run_pk: int, kind: int, old: Mapping[str, Value], new: Mapping[str, Value]
) -> None:
    """Turns the run's rows of ``kind`` from ``old`` (what they hold) into ``new``: at most one
    DELETE, INSERT and UPDATE (executemany)."""
    gone = [k for k in old if k not in new]
    added = [k for k in new if k not in old]
    changed = [k for k in new if k in old and not _same(old[k], new[k])]
    for i in range(0, len(gone), 500):  # bounded statement size whatever the number of keys
        conn.execute(
            delete(_VALUES).where(
                _VALUES.c.run_pk == run_pk, _VALUES.c.kind == kind, _VALUES.c.key.in_(gone[i : i + 500])
            )
        )
    if added:
        conn.execute(insert(_VALUES), [_row(run_pk, kind, k, new[k]) for k in added])
    if changed:
        rows = [{f"b_{c}": v for c, v in _row(run_pk, kind, k, new[k]).items()} for k in changed]
        conn.execute(_UPDATE_VALUE, rows)


def _same(a: Value, b: Value) -> bool:
    return a[0] == b[0] and a[2] == b[2] and (a[1] == b[1] or (a[1] is None and b[1] is None))


def _row(run_pk: int, kind: int, key: str, value: Value) -> dict[str, Any]:
    vtype, num, text = value
    return {"run_pk": run_pk, "kind": kind, "key": key, "vtype": str(vtype), "num": num, "text": text}


def backfill(conn: Connection, run: RunDocs) -> None:
    """Writes every kind for a run that has no rows yet (the migration that created the table)."""
    sync(conn, run, None)


_VALUES = cast(Table, RunValueRow.__table__)
_METRICS = cast(Table, MetricSummaryRow.__table__)
_SELECT_METRICS = select(_METRICS).where(_METRICS.c.run_pk == bindparam("b_run_pk"))
_UPDATE_VALUE = (
    update(_VALUES)
    .where(
        and_(
            _VALUES.c.run_pk == bindparam("b_run_pk"),
            _VALUES.c.kind == bindparam("b_kind"),
            _VALUES.c.key == bindparam("b_key"),
        )
    )
    .values(vtype=bindparam("b_vtype"), num=bindparam("b_num"), text=bindparam("b_text"))
)
