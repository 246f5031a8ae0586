"""The one representation of a run query: a filter tree, an order and a page position.

``application._filters`` parses what users write (wandb's MongoDB-style filters) into these nodes;
``storage._sql_search`` compiles them to parameterised SQL. They live at the top level, beside the
entities, because both layers speak them.

Semantics every backend (and the tests' Python reference) implements:

* A field of a run has no value, one value (state, name, ``config.lr`` ...) or several (``tags``).
  A value is a typed scalar: a number (int or float, NaN included), a string, a bool, null, or
  "other" (a list, an empty dict: it exists but never compares).
* ``Cmp`` with a number compares numbers only, with a string strings only (by code point), with a
  bool bools only, with None nulls only. NaN is never equal, greater or less than anything.
  A field without a value never matches a comparison.
* ``$ne`` and ``$nin`` mean "has a value, and it is not equal (to any)": a missing key does not
  match them. ``Not`` (``$not``, ``$nor``) is plain negation, so a run without the key matches it.
* A field with several values (tags) matches a comparison when any of its values does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tracklog_server._entities import StrEnum


class FieldKind(enum.Enum):
    COLUMN = "column"  # a column of ``runs`` (state, name, created_at ...)
    CONFIG = "config"
    SUMMARY = "summary"
    TAGS = "tags"
    USER = "user"  # the user the run's metadata names


class ValueType(StrEnum):
    """How a stored value is typed (``run_values.vtype``)."""

    INT = "int"
    FLOAT = "float"
    STR = "str"
    BOOL = "bool"
    NULL = "null"
    OTHER = "other"


NUMERIC_TYPES = (ValueType.INT, ValueType.FLOAT)

# Columns of ``runs`` a filter may name, by their public name, and whether they hold text or numbers.
TEXT_COLUMNS = ("state", "name", "id", "group", "job_type", "host")
NUMBER_COLUMNS = ("created_at", "heartbeat_at", "runtime")
# Text columns where an empty string means "none" (a run without a group has no group value).
OPTIONAL_COLUMNS = frozenset({"group", "job_type", "host"})


@dataclass(frozen=True, slots=True)
class Field:
    """What a condition reads. For config and summary, ``keys`` are the stored keys (dots for nesting)
    it may be stored under: ``config.lr.value`` (as wandb users write it) reads ``lr.value`` or ``lr``.
    For a column, ``keys`` is its one public name."""

    kind: FieldKind
    keys: tuple[str, ...]

    @property
    def label(self) -> str:
        if self.kind in (FieldKind.CONFIG, FieldKind.SUMMARY):
            return f"{self.kind.value}.{self.keys[0]}"
        return self.keys[0]

    @property
    def many(self) -> bool:
        """Whether the field holds several values (tags)."""
        return self.kind is FieldKind.TAGS


Scalar = float | str | bool | None


class CmpOp(enum.Enum):
    EQ = "$eq"
    NE = "$ne"
    GT = "$gt"
    GTE = "$gte"
    LT = "$lt"
    LTE = "$lte"


@dataclass(frozen=True, slots=True)
class Cmp:
    """``field op value``; numbers are floats here (ints are converted once, at parsing)."""

    field: Field
    op: CmpOp
    value: Scalar


@dataclass(frozen=True, slots=True)
class In:
    """``$in`` (``negate``: ``$nin``): has a value equal to one of ``values`` (to none of them)."""

    field: Field
    values: tuple[Scalar, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class Exists:
    field: Field
    exists: bool


@dataclass(frozen=True, slots=True)
class Regex:
    """A string value matching ``pattern`` anywhere (a search, as Python's ``re.search``). The pattern
    was checked by the parser: a subset both Python and PostgreSQL read alike, without the
    constructs that backtrack without bound."""

    field: Field
    pattern: str


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]  # empty: every run


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]  # empty: no run


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node = Cmp | In | Exists | Regex | And | Or | Not

MATCH_ALL: Node = And(())


@dataclass(frozen=True, slots=True)
class Order:
    """Sort by ``field``, ascending unless ``descending``; ties by run id in the same direction.

    Values sort by rank first, always ascending: numbers, then strings, then other values (NaN,
    bools, nulls, lists: among themselves by run id), then runs without the field."""

    field: Field
    descending: bool

    def __str__(self) -> str:
        return ("-" if self.descending else "+") + self.field.label


@dataclass(frozen=True, slots=True)
class SortKey:
    """A run's place in an order: (rank, number, text) of its value, then its id. What a cursor
    holds: the next page starts after this key."""

    rank: int
    num: float
    text: str
    run_id: str


# Ranks of SortKey.rank.
RANK_NUMBER, RANK_STRING, RANK_OTHER, RANK_MISSING = 0, 1, 2, 3


def has_regex(node: Node) -> bool:
    if isinstance(node, Regex):
        return True
    if isinstance(node, And | Or):
        return any(has_regex(item) for item in node.items)
    if isinstance(node, Not):
        return has_regex(node.item)
    return False
