"""``run.define_metric()``: per-key summaries (min, max, mean, ...) and step metrics.

A definition names a key or a glob of keys (``"val/*"``). Keys a definition covers leave ``log()``'s
fast path: each committed row that holds one passes through ``Metrics.prepare`` (under the run's
lock), which keeps the running aggregates and fills in the step metric. What the summary should
show is sent as ordinary SummaryUpdate records, at most once a second and at the end, so the store
needs nothing new: the explicit summary value replaces the last logged one.

The definitions themselves are stored with the run in its config, under the reserved key
``_tracklog`` (as wandb keeps its own under ``_wandb``); ``ApiRun.metric_definitions`` reads them
back and ``ApiRun.config`` leaves the key out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tracklog import _history, _values
from tracklog.v1 import records_pb2

RESERVED_CONFIG_KEY = "_tracklog"
SUMMARIES = ("min", "max", "mean", "last", "first", "best", "none")
GOALS = ("minimize", "maximize")
EMIT_INTERVAL = 1.0  # seconds between summary records while a run logs defined keys


@dataclass(frozen=True)
class MetricDefinition:
    """One ``define_metric`` call. ``summary`` is the aggregates asked for, in order (empty: the
    default, the last value)."""

    name: str
    step_metric: str | None = None
    step_sync: bool = True
    hidden: bool = False
    summary: tuple[str, ...] = ()
    goal: str | None = None

    def matches(self, key: str) -> bool:
        if "*" not in self.name and "?" not in self.name and "[" not in self.name:
            return key == self.name
        from fnmatch import fnmatchcase  # only runs that define globs pay for it

        return fnmatchcase(key, self.name)

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["summary"] = list(self.summary)
        return {k: v for k, v in doc.items() if v not in (None, (), [])}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> MetricDefinition:
        return cls(
            name=str(doc["name"]),
            step_metric=doc.get("step_metric"),
            step_sync=bool(doc.get("step_sync", True)),
            hidden=bool(doc.get("hidden", False)),
            summary=tuple(doc.get("summary", ())),
            goal=doc.get("goal"),
        )


def parse(
    name: object,
    step_metric: object = None,
    step_sync: object = None,
    hidden: object = None,
    summary: object = None,
    goal: object = None,
) -> MetricDefinition:
    """A definition from ``define_metric``'s arguments, or an error naming the bad one."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"define_metric() name must be a non-empty str, got {name!r}")
    if "*" not in name:
        _values.check_key(name, "define_metric()")
    if step_metric is not None:
        if not isinstance(step_metric, str):
            raise TypeError(f"define_metric() step_metric must be a str, got {type(step_metric).__name__}")
        _values.check_key(step_metric, "define_metric() step_metric")
        if step_metric == name:
            raise ValueError(f"define_metric() step_metric {step_metric!r} cannot be the metric itself")
    aggregates: tuple[str, ...] = ()
    if summary is not None:
        if not isinstance(summary, str):
            raise TypeError(f"define_metric() summary must be a str like 'min' or 'min,max'; got {summary!r}")
        aggregates = tuple(dict.fromkeys(part.strip() for part in summary.split(",") if part.strip()))
        unknown = [a for a in aggregates if a not in SUMMARIES]
        if unknown or not aggregates:
            raise ValueError(
                f"define_metric() summary {summary!r}: each part must be one of {', '.join(SUMMARIES)}"
            )
        if "none" in aggregates and len(aggregates) > 1:
            raise ValueError(f"define_metric() summary {summary!r}: 'none' cannot be combined")
        if aggregates == ("last",):
            aggregates = ()
    if goal is not None and goal not in GOALS:
        raise ValueError(f"define_metric() goal must be 'minimize' or 'maximize', got {goal!r}")
    if "best" in aggregates and goal is None:
        raise ValueError("define_metric() summary 'best' needs goal='minimize' or goal='maximize'")
    return MetricDefinition(
        name=name,
        step_metric=step_metric,
        step_sync=True if step_sync is None else bool(step_sync),
        hidden=bool(hidden),
        summary=aggregates,
        goal=goal,
    )


class _Aggregate:
    __slots__ = ("count", "first", "last", "max", "min", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.first: Any = None
        self.last: Any = None

    def add(self, value: Any) -> None:
        if self.first is None:
            self.first = value
        self.last = value
        # min, max and mean are over numbers (bools are not); NaN is skipped, as the store's min/max.
        if type(value) in (int, float) and not math.isnan(value):
            self.count += 1
            self.total += value
            self.min = min(self.min, value)
            self.max = max(self.max, value)

    def value(self, aggregate: str, goal: str | None) -> Any:
        if aggregate == "best":
            aggregate = "min" if goal == "minimize" else "max"
        if aggregate in ("min", "max", "mean") and self.count == 0:
            return None
        if aggregate == "mean":
            return self.total / self.count
        return getattr(self, aggregate)


class Metrics:
    """A run's definitions and the aggregates of the keys they cover. Not thread-safe: the run
    calls it under its lock."""

    def __init__(
        self, emit: Callable[[records_pb2.Record], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._definitions: dict[str, MetricDefinition] = {}  # by name; a later call replaces
        self._resolved: dict[str, MetricDefinition | None] = {}
        self._step_metrics: set[str] = set()
        self._aggregates: dict[str, _Aggregate] = {}
        self._last: dict[str, Any] = {}  # the last value of each step metric, for step_sync
        self._dirty: set[str] = set()
        self._last_emit = -math.inf

    @property
    def definitions(self) -> list[MetricDefinition]:
        return list(self._definitions.values())

    def add(self, definition: MetricDefinition) -> None:
        self._definitions.pop(definition.name, None)
        self._definitions[definition.name] = definition
        self._resolved.clear()
        self._step_metrics = {d.step_metric for d in self._definitions.values() if d.step_metric}

    def stored(self) -> records_pb2.Record:
        """The config record that stores every definition with the run."""
        doc = {RESERVED_CONFIG_KEY: {"metrics": [d.as_json() for d in self._definitions.values()]}}
        return records_pb2.Record(config=records_pb2.ConfigUpdate(items_json=_history.dumps(doc)))

    def definition(self, key: str) -> MetricDefinition | None:
        """What applies to ``key``: every definition that covers it merged, globs in the order they
        were made and then its own by name, each setting only what it gives (a glob's step metric
        and a name's summary both apply)."""
        try:
            return self._resolved[key]
        except KeyError:
            pass
        own = self._definitions.get(key)
        covering = [d for d in self._definitions.values() if d is not own and d.matches(key)]
        if own is not None:
            covering.append(own)
        found: MetricDefinition | None = None
        for d in covering:
            if found is None:
                found = d
                continue
            found = MetricDefinition(
                name=d.name,
                step_metric=d.step_metric or found.step_metric,
                step_sync=d.step_sync if d.step_metric else found.step_sync,
                hidden=d.hidden or found.hidden,
                summary=d.summary or found.summary,
                goal=d.goal or found.goal,
            )
        self._resolved[key] = found
        return found

    def tracks(self, key: str) -> bool:
        """Whether rows holding ``key`` must pass through ``prepare`` (not log()'s fast path)."""
        if key in self._step_metrics:
            return True
        found = self.definition(key)
        return found is not None and (bool(found.summary) or found.step_metric is not None)

    def step_metric_of(self, keys: Iterable[str]) -> str | None:
        """The step metric every one of ``keys`` is defined against, if they share one (keys that
        are step metrics themselves, such as the step metric in the row, do not count)."""
        shared: set[str | None] = set()
        for key in keys:
            if key in self._step_metrics:
                continue
            found = self.definition(key)
            shared.add(found.step_metric if found is not None else None)
            if len(shared) > 1:
                return None
        return next(iter(shared), None)

    def prepare(self, row: dict[str, Any]) -> None:
        """Fills in step metrics (``step_sync``) and keeps the aggregates, for a row being committed."""
        for key in [k for k in row if k in self._step_metrics]:
            self._last[key] = row[key]
        for key in list(row):
            found = self.definition(key)
            if found is None:
                continue
            step_metric = found.step_metric
            if step_metric and found.step_sync and step_metric not in row and step_metric in self._last:
                row[step_metric] = self._last[step_metric]
            if found.summary:
                aggregate = self._aggregates.get(key)
                if aggregate is None:
                    aggregate = self._aggregates[key] = _Aggregate()
                aggregate.add(row[key])
                self._dirty.add(key)

    def due(self) -> records_pb2.Record | None:
        """A summary record if keys changed and the last one is at least ``EMIT_INTERVAL`` old."""
        if not self._dirty or self._clock() - self._last_emit < EMIT_INTERVAL:
            return None
        return self.flush()

    def flush(self) -> records_pb2.Record | None:
        """The summary record for every key changed since the last one (None if nothing changed)."""
        if not self._dirty:
            return None
        self._last_emit = self._clock()
        items, removed = self._summary_of(sorted(self._dirty))
        self._dirty.clear()
        return records_pb2.Record(
            summary=records_pb2.SummaryUpdate(items_json=_history.dumps(items), removed=removed)
        )

    def overlay(self, summary: dict[str, Any]) -> None:
        """Applies the defined summaries to ``summary`` (the last logged values), in place."""
        items, removed = self._summary_of(list(self._aggregates))
        summary.update(items)
        for key in removed:
            summary.pop(key, None)

    def _summary_of(self, keys: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
        items: dict[str, Any] = {}
        removed: list[str] = []
        for key in keys:
            found = self.definition(key)
            aggregate = self._aggregates.get(key)
            if found is None or aggregate is None or not found.summary:
                continue
            if found.summary == ("none",):
                removed.append(key)
            elif len(found.summary) == 1:
                value = aggregate.value(found.summary[0], found.goal)
                if value is not None:  # no number logged yet: the last value stands
                    items[key] = value
            else:
                items[key] = {name: aggregate.value(name, found.goal) for name in found.summary}
        return items, removed


def from_config(config: dict[str, Any]) -> list[MetricDefinition]:
    """Takes the stored definitions out of a run's config (in place), oldest first."""
    reserved = config.pop(RESERVED_CONFIG_KEY, None)
    if not isinstance(reserved, dict):
        return []
    found = []
    for doc in reserved.get("metrics", []):
        try:
            found.append(MetricDefinition.from_json(doc))
        except (KeyError, TypeError, ValueError):  # written by another version: skip what is unclear
            continue
    return found
