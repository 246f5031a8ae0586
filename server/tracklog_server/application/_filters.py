"""Parsing run queries as wandb users write them: MongoDB-style filters and ``-created_at`` orders.

Everything a user wrote is checked here, once, and becomes the tree of ``_filter_ast``; the store
compiles that tree to parameterised SQL and never sees user text as SQL. Each refusal is an
InvalidInputError naming the offending part by its place in the filter (``filters["$or"][1]
["config.lr"]: ...``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from tracklog_server._errors import InvalidInputError
from tracklog_server._filter_ast import (
    MATCH_ALL,
    NUMBER_COLUMNS,
    TEXT_COLUMNS,
    And,
    Cmp,
    CmpOp,
    Exists,
    Field,
    FieldKind,
    In,
    Node,
    Not,
    Or,
    Order,
    Regex,
    Scalar,
)

from ._regex import check_regex

DEFAULT_ORDER = "-created_at"  # as wandb: newest first
MAX_DEPTH = 32  # nesting of $and/$or/$nor/$not
MAX_NODES = 1000  # conditions in one filter
MAX_IN_VALUES = 1000
MAX_STRING = 64 * 1024  # characters of one string in a filter
MAX_KEY = 1024  # characters of a config or summary key in a filter

# What users write for each column (wandb's GraphQL names too) -> the column's public name.
_COLUMN_NAMES = {
    **{name: name for name in TEXT_COLUMNS + NUMBER_COLUMNS},
    "display_name": "name",
    "displayName": "name",
    "jobType": "job_type",
    "createdAt": "created_at",
    "heartbeatAt": "heartbeat_at",
    "duration": "runtime",
}
_CONFIG_PREFIXES = ("config.",)
_SUMMARY_PREFIXES = ("summary.", "summary_metrics.")
_TIME_COLUMNS = frozenset({"created_at", "heartbeat_at"})
_FIELD_OPS = frozenset(
    {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex", "$not"}
)
_LOGICAL_OPS = frozenset({"$and", "$or", "$nor", "$not"})
_FIELD_HELP = (
    "use state, name (or display_name), id, tags, group, job_type, host, user, created_at, "
    "heartbeat_at, runtime, config.<key> or summary.<key>"
)


def parse_field(path: str, where: str = "field") -> Field:
    """A field as users name it: a column, ``tags``, ``user``, ``config.<key>`` or ``summary.<key>``
    (dots inside the key for nested values; ``config.<key>.value`` as wandb writes it)."""
    if not isinstance(path, str) or not path:
        raise InvalidInputError(f"{where}: a field name must be a non-empty string, not {path!r}")
    if len(path) > MAX_KEY:
        raise InvalidInputError(f"{where}: field name of {len(path)} characters; the limit is {MAX_KEY}")
    column = _COLUMN_NAMES.get(path)
    if column is not None:
        return Field(FieldKind.COLUMN, (column,))
    if path == "tags":
        return Field(FieldKind.TAGS, ("tags",))
    if path in ("user", "username"):
        return Field(FieldKind.USER, ("user",))
    for prefixes, kind in ((_CONFIG_PREFIXES, FieldKind.CONFIG), (_SUMMARY_PREFIXES, FieldKind.SUMMARY)):
        for prefix in prefixes:
            if path.startswith(prefix):
                key = path[len(prefix) :]
                if not key or key.startswith(".") or key.endswith("."):
                    raise InvalidInputError(f"{where}: {path!r} names no key; write {prefix}<key>")
                _check_string(key, where)
                if kind is FieldKind.CONFIG and key.endswith(".value"):
                    # wandb keeps each config item as {"value": ..., "desc": ...}, so its users write
                    # config.lr.value; a config that really nests a "value" key is read the same.
                    return Field(kind, (key, key[: -len(".value")]))
                return Field(kind, (key,))
    raise InvalidInputError(f"{where}: unknown field {path!r}; {_FIELD_HELP}")


def parse_order(text: str | None) -> Order:
    """``-field`` descending, ``+field`` or ``field`` ascending; empty or None: ``-created_at``."""
    text = (text or "").strip() or DEFAULT_ORDER
    descending = text.startswith("-")
    path = text[1:] if text[0] in "+-" else text
    field = parse_field(path, f"order {text!r}")
    if field.many:
        raise InvalidInputError(f"order {text!r}: runs cannot be sorted by their tags")
    return Order(field, descending)


def parse_filters(filters: Mapping[str, Any] | None) -> Node:
    """The tree of a wandb-style filter; None or ``{}`` matches every run."""
    if filters is None:
        return MATCH_ALL
    if not isinstance(filters, Mapping):
        raise InvalidInputError(f"filters must be a JSON object (a dict), not {type(filters).__name__}")
    parser = _Parser()
    return parser.document(filters, "filters", 0)


class _Parser:
    def __init__(self) -> None:
        self.nodes = 0

    def _count(self, where: str) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise InvalidInputError(f"{where}: the filter has more than {MAX_NODES} conditions")

    def document(self, doc: Mapping[str, Any], where: str, depth: int) -> Node:
        """``{"a": ..., "$or": [...]}``: every item must hold (an implicit $and)."""
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"{where}: filters nest deeper than {MAX_DEPTH} levels")
        items: list[Node] = []
        for key, value in doc.items():
            here = f"{where}[{key!r}]"
            if not isinstance(key, str):
                raise InvalidInputError(f"{here}: keys of a filter must be strings")
            if key.startswith("$"):
                items.append(self.logical(key, value, here, depth + 1))
            else:
                items.append(self.condition(parse_field(key, here), value, here, depth + 1))
        return items[0] if len(items) == 1 else And(tuple(items))

    def logical(self, op: str, value: Any, where: str, depth: int) -> Node:
        if op not in _LOGICAL_OPS:
            hint = " (it applies to a field: {field: {op: value}})" if op in _FIELD_OPS else ""
            raise InvalidInputError(
                f"{where}: unknown operator {op!r} here{hint}; use $and, $or, $nor or $not"
            )
        if op == "$not":
            if not isinstance(value, Mapping):
                raise InvalidInputError(f"{where}: $not takes a filter object")
            return Not(self.document(value, where, depth))
        if not isinstance(value, list) or not value:
            raise InvalidInputError(f"{where}: {op} takes a non-empty list of filter objects")
        parts: list[Node] = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise InvalidInputError(f"{where}[{i}]: {op} takes filter objects, not {_kind(item)}")
            parts.append(self.document(item, f"{where}[{i}]", depth))
        if op == "$and":
            return And(tuple(parts))
        if op == "$or":
            return Or(tuple(parts))
        return Not(Or(tuple(parts)))  # $nor

    def condition(self, field: Field, value: Any, where: str, depth: int) -> Node:
        """``field: value`` (equality) or ``field: {op: value, ...}`` (all must hold)."""
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"{where}: filters nest deeper than {MAX_DEPTH} levels")
        if not isinstance(value, Mapping):
            self._count(where)
            return Cmp(field, CmpOp.EQ, self.literal(field, value, where))
        if not value:
            raise InvalidInputError(f"{where}: an empty object; give a value or operators like $gt")
        ops = [k for k in value if isinstance(k, str) and k.startswith("$")]
        if len(ops) != len(value):
            raise InvalidInputError(
                f"{where}: comparing with an object is not supported; use operators such as "
                '{"$eq": 1} (nested keys are written with dots: config.a.b)'
            )
        items = [self.operator(field, op, arg, f"{where}[{op!r}]", depth) for op, arg in value.items()]
        return items[0] if len(items) == 1 else And(tuple(items))

    def operator(self, field: Field, op: str, arg: Any, where: str, depth: int) -> Node:
        self._count(where)
        if op == "$not":
            if isinstance(arg, str):  # {"$not": "pattern"}: MongoDB accepts a regex here
                return Not(self.regex(field, arg, where))
            if not isinstance(arg, Mapping):
                raise InvalidInputError(f"{where}: $not takes an object of operators")
            return Not(self.condition(field, arg, where, depth + 1))
        if op in ("$in", "$nin"):
            if not isinstance(arg, list):
                raise InvalidInputError(f"{where}: {op} takes a list of values, not {_kind(arg)}")
            if len(arg) > MAX_IN_VALUES:
                raise InvalidInputError(
                    f"{where}: {op} lists {len(arg)} values; the limit is {MAX_IN_VALUES}"
                )
            values = tuple(self.literal(field, v, f"{where}[{i}]") for i, v in enumerate(arg))
            return In(field, values, negate=op == "$nin")
        if op == "$exists":
            if not isinstance(arg, bool):
                raise InvalidInputError(f"{where}: $exists takes true or false, not {arg!r}")
            return Exists(field, arg)
        if op == "$regex":
            return self.regex(field, arg, where)
        try:
            cmp = CmpOp(op)
        except ValueError:
            raise InvalidInputError(
                f"{where}: unknown operator {op!r}; use one of {', '.join(sorted(_FIELD_OPS))}"
            ) from None
        literal = self.literal(field, arg, where)
        if cmp in (CmpOp.GT, CmpOp.GTE, CmpOp.LT, CmpOp.LTE) and not isinstance(literal, float | str):
            raise InvalidInputError(f"{where}: {op} compares numbers or strings, not {_kind(arg)}")
        return Cmp(field, cmp, literal)

    def regex(self, field: Field, pattern: Any, where: str) -> Node:
        if not isinstance(pattern, str):
            raise InvalidInputError(f"{where}: $regex takes a string pattern, not {_kind(pattern)}")
        if field.kind is FieldKind.COLUMN and field.keys[0] in NUMBER_COLUMNS:
            raise InvalidInputError(f"{where}: {field.label} is a number; $regex matches strings")
        _check_string(pattern, where)
        check_regex(pattern, where)
        return Regex(field, pattern)

    def literal(self, field: Field, value: Any, where: str) -> Scalar:
        """A value to compare with, checked against what the field can hold."""
        if isinstance(value, list | dict):
            hint = " (use $in for one of several values)" if isinstance(value, list) else ""
            raise InvalidInputError(f"{where}: cannot compare with {_kind(value)}{hint}")
        if value is not None and not isinstance(value, bool | int | float | str):
            raise InvalidInputError(f"{where}: cannot compare with {_kind(value)}")
        name = field.keys[0]
        if field.kind is FieldKind.COLUMN and name in NUMBER_COLUMNS:
            if isinstance(value, str) and name in _TIME_COLUMNS:
                return _timestamp(value, where)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInputError(
                    f"{where}: {name} compares with numbers"
                    + (" or ISO 8601 times" if name in _TIME_COLUMNS else "")
                    + f", not {_kind(value)}"
                )
        elif field.kind not in (FieldKind.CONFIG, FieldKind.SUMMARY) and not isinstance(value, str):
            raise InvalidInputError(f"{where}: {field.label} compares with strings, not {_kind(value)}")
        if isinstance(value, str):
            return _check_string(value, where)
        if isinstance(value, bool) or value is None:
            return value
        return _number(value, where)


def _number(value: int | float, where: str) -> float:
    try:
        number = float(value)
    except OverflowError:
        raise InvalidInputError(f"{where}: the number {value} is out of range") from None
    if math.isnan(number):
        raise InvalidInputError(f"{where}: NaN equals nothing and orders nowhere; use $exists instead")
    return number


def _check_string(value: str, where: str) -> str:
    if len(value) > MAX_STRING:
        raise InvalidInputError(f"{where}: a string of {len(value)} characters; the limit is {MAX_STRING}")
    if "\x00" in value:
        raise InvalidInputError(f"{where}: a string holds a NUL character, which no stored value can")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{where}: a string is not valid Unicode (a lone surrogate)") from None
    return value


def _timestamp(text: str, where: str) -> float:
    """Unix seconds of an ISO 8601 time (``2026-12-01``, ``2026-12-01T10:00:00Z``); UTC when no
    offset is given, as wandb reads them."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInputError(f"{where}: {text[:60]!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"{type(value).__name__} {str(value)[:40]!r}"
