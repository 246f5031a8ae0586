"""Compiling run queries (``_filter_ast``) to parameterised SQL, and running them: search with keyset
paging, group, describe.

Every value a user wrote travels as a bound parameter; only names from fixed tables (columns, the
kinds of ``run_values``) become SQL. Config, summary, tags and user are read from ``run_values``
(one correlated EXISTS per condition, on its primary key); columns directly.

Text compares by code point on both databases (SQLite's BINARY, PostgreSQL's "C" collation), as the
tests' Python reference does. A query is time-limited: SQLite through a progress handler and a
deadline the REGEXP function checks, PostgreSQL through ``SET LOCAL statement_timeout``.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import sqlalchemy.exc
from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session, aliased

from tracklog_server._entities import GroupMetric, KeyDescription, ProjectKey, RunGroup
from tracklog_server._errors import InvalidInputError, StoreError
from tracklog_server._filter_ast import (
    NUMERIC_TYPES,
    OPTIONAL_COLUMNS,
    RANK_MISSING,
    RANK_NUMBER,
    RANK_OTHER,
    RANK_STRING,
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
    SortKey,
    ValueType,
)

from . import _values
from ._models import RunRow, RunValueRow

MAX_GROUPS = 1000
_NUMERIC = [str(t) for t in NUMERIC_TYPES]
_KINDS = {
    FieldKind.CONFIG: _values.KIND_CONFIG,
    FieldKind.SUMMARY: _values.KIND_SUMMARY,
    FieldKind.TAGS: _values.KIND_TAG,
    FieldKind.USER: _values.KIND_USER,
}

# The deadline of the query running on this thread, checked by the SQLite REGEXP function.
_deadline = threading.local()


class QueryTimeout(InvalidInputError):
    """The query ran past its time limit (a costly $regex, most likely)."""


def regexp(pattern: str, text: str | None) -> int:
    """SQLite's ``tracklog_regexp(pattern, text)``: 1 when ``pattern`` is found in ``text``."""
    deadline = getattr(_deadline, "at", None)
    if deadline is not None and time.monotonic() > deadline:
        raise QueryTimeout("the query ran past its time limit")
    if text is None:
        return 0
    return 1 if _compiled(pattern).search(text) else 0


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    # DOTALL: PostgreSQL's "." matches a newline too (its ~ is not newline-sensitive).
    return re.compile(pattern, re.DOTALL)


class Compiler:
    """Turns filter nodes and orders into SQL expressions for one database (``dialect``)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._collation = "C" if dialect == "postgresql" else "BINARY"

    def text(self, expr: Any) -> ColumnElement[Any]:
        """``expr`` compared by code point."""
        return cast(ColumnElement[Any], expr.collate(self._collation))

    # -- filters -------------------------------------------------------------------------------

    def where(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, And):
            return and_(true(), *(self.where(item) for item in node.items))
        if isinstance(node, Or):
            return or_(false(), *(self.where(item) for item in node.items))
        if isinstance(node, Not):
            return not_(self.where(node.item))
        if isinstance(node, Exists):
            present = self.present(node.field)
            return present if node.exists else not_(present)
        if isinstance(node, Cmp):
            if node.op is CmpOp.NE:
                return and_(self.present(node.field), not_(self.holds(node.field, CmpOp.EQ, node.value)))
            return self.holds(node.field, node.op, node.value)
        if isinstance(node, In):
            if node.negate:
                return and_(self.present(node.field), not_(self.any_of(node.field, node.values)))
            return self.any_of(node.field, node.values)
        assert isinstance(node, Regex)
        return self.matches(node.field, node.pattern)

    def _value_exists(self, field: Field, cond: ColumnElement[bool] | None = None) -> ColumnElement[bool]:
        v = RunValueRow
        conds: list[ColumnElement[bool]] = [v.run_pk == RunRow.pk, v.kind == _KINDS[field.kind]]
        if field.kind in (FieldKind.CONFIG, FieldKind.SUMMARY):
            keys = field.keys
            conds.append(v.key == keys[0] if len(keys) == 1 else v.key.in_(keys))
        if cond is not None:
            conds.append(cond)
        return select(literal(1)).where(*conds).exists()

    def _column(self, field: Field) -> ColumnElement[Any]:
        return column_expr(field.keys[0])

    def present(self, field: Field) -> ColumnElement[bool]:
        if field.kind is FieldKind.COLUMN:
            name = field.keys[0]
            return self._column(field) != "" if name in OPTIONAL_COLUMNS else true()
        return self._value_exists(field)

    def holds(self, field: Field, op: CmpOp, value: Scalar) -> ColumnElement[bool]:
        """The field has a value ``op value`` (op is not $ne)."""
        if field.kind is FieldKind.COLUMN:
            col = self._column(field)
            cond = _compare(
                self.text(col) if isinstance(value, str) and op is not CmpOp.EQ else col, op, value
            )
            return and_(self.present(field), cond) if field.keys[0] in OPTIONAL_COLUMNS else cond
        return self._value_exists(field, self._value_pred(op, value))

    def _value_pred(self, op: CmpOp, value: Scalar) -> ColumnElement[bool]:
        v = RunValueRow
        if isinstance(value, bool):
            return and_(v.vtype == ValueType.BOOL.value, v.num == (1.0 if value else 0.0))
        if value is None:
            return v.vtype == ValueType.NULL.value
        if isinstance(value, str):
            text = v.text if op is CmpOp.EQ else self.text(v.text)
            return and_(v.vtype == ValueType.STR.value, _compare(text, op, value))
        return and_(v.vtype.in_(_NUMERIC), _compare(v.num, op, value))

    def any_of(self, field: Field, values: Sequence[Scalar]) -> ColumnElement[bool]:
        if not values:
            return false()
        if field.kind is FieldKind.COLUMN:
            return or_(*(self.holds(field, CmpOp.EQ, value) for value in values))
        return self._value_exists(field, or_(*(self._value_pred(CmpOp.EQ, value) for value in values)))

    def _regex(self, expr: Any, pattern: str) -> ColumnElement[bool]:
        if self.dialect == "postgresql":
            # A comparison: its result is boolean (so $not of a $regex negates a boolean, not the text).
            return cast(ColumnElement[bool], expr.op("~", is_comparison=True)(pattern))
        return func.tracklog_regexp(pattern, expr) == 1

    def matches(self, field: Field, pattern: str) -> ColumnElement[bool]:
        if field.kind is FieldKind.COLUMN:
            return and_(self.present(field), self._regex(self._column(field), pattern))
        v = RunValueRow
        return self._value_exists(field, and_(v.vtype == ValueType.STR.value, self._regex(v.text, pattern)))

    # -- values to sort and group by -----------------------------------------------------------

    def sort_parts(
        self, field: Field
    ) -> tuple[list[Any], ColumnElement[Any], ColumnElement[Any], ColumnElement[Any], ColumnElement[Any]]:
        """(outer joins to add, rank, number, text, vtype) of ``field``'s value for every run."""
        if field.kind is FieldKind.COLUMN:
            name = field.keys[0]
            col = self._column(field)
            if name in TEXT_COLUMNS:
                present = self.present(field)
                rank = case((present, RANK_STRING), else_=RANK_MISSING)
                kind = case((present, ValueType.STR.value), else_=None)
                return [], rank, literal(0.0, Float), col, kind
            return [], literal(RANK_NUMBER), col, literal(""), literal(ValueType.FLOAT.value)
        v_aliases = [aliased(RunValueRow) for _ in field.keys]
        joins = []
        for alias, key in zip(v_aliases, field.keys, strict=True):
            on = and_(alias.run_pk == RunRow.pk, alias.kind == _KINDS[field.kind], alias.key == key)
            joins.append((alias, on))
        # The first key the run has wins (config.lr.value: "lr.value", else "lr").
        vtype: Any = v_aliases[-1].vtype
        num: Any = v_aliases[-1].num
        text: Any = v_aliases[-1].text
        for alias in reversed(v_aliases[:-1]):
            has = alias.run_pk.is_not(None)
            vtype = case((has, alias.vtype), else_=vtype)
            num = case((has, alias.num), else_=num)
            text = case((has, alias.text), else_=text)
        is_number = and_(vtype.in_(_NUMERIC), num.is_not(None))
        rank = case(
            (vtype.is_(None), RANK_MISSING),
            (is_number, RANK_NUMBER),
            (vtype == ValueType.STR.value, RANK_STRING),
            else_=RANK_OTHER,
        )
        snum = case((is_number, num), else_=literal(0.0, Float))
        stext = case((vtype == ValueType.STR.value, text), else_=literal(""))
        return joins, rank, snum, stext, vtype


def column_expr(name: str) -> ColumnElement[Any]:
    """The SQL of a column field by its public name."""
    if name == "runtime":
        # As ``_to_run``: the Timing record's runtime, else wall time to the end or the latest news.
        span = func.coalesce(RunRow.finished_at, RunRow.heartbeat_at) - RunRow.created_at
        return func.coalesce(RunRow.runtime, case((span > 0, span), else_=literal(0.0, Float)))
    columns: dict[str, Any] = {
        "state": RunRow.state,
        "name": RunRow.name,
        "id": RunRow.run_id,
        "group": RunRow.group,
        "job_type": RunRow.job_type,
        "host": RunRow.host,
        "created_at": RunRow.created_at,
        "heartbeat_at": RunRow.heartbeat_at,
    }
    return columns[name]  # type: ignore[no-any-return]


def _compare(expr: Any, op: CmpOp, value: Any) -> ColumnElement[bool]:
    if op is CmpOp.EQ:
        out = expr == value
    elif op is CmpOp.GT:
        out = expr > value
    elif op is CmpOp.GTE:
        out = expr >= value
    elif op is CmpOp.LT:
        out = expr < value
    elif op is CmpOp.LTE:
        out = expr <= value
    else:
        raise AssertionError(op)
    return cast(ColumnElement[bool], out)


def project_where(project: ProjectKey) -> ColumnElement[bool]:
    return and_(
        RunRow.entity == project.entity, RunRow.project == project.project, RunRow.deleted_at.is_(None)
    )


@contextmanager
def time_limited(session: Session, seconds: float) -> Iterator[None]:
    """Bounds the statements run inside on this session's transaction; past the limit they fail and
    QueryTimeout is raised."""
    conn = session.connection()
    deadline = time.monotonic() + seconds
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}")  # an int
        try:
            yield
        except (StoreError, sqlalchemy.exc.SQLAlchemyError) as exc:
            if time.monotonic() >= deadline - 0.05:  # PostgreSQL cancelled it: its clock, not ours
                raise _timeout(seconds) from exc
            raise
        return
    raw: Any = conn.connection.dbapi_connection
    raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
    _deadline.at = deadline
    try:
        yield
    except (StoreError, sqlalchemy.exc.SQLAlchemyError) as exc:
        if time.monotonic() > deadline:
            raise _timeout(seconds) from exc
        raise
    finally:
        _deadline.at = None
        raw.set_progress_handler(None, 0)


def _timeout(seconds: float) -> QueryTimeout:
    return QueryTimeout(
        f"the query took longer than {seconds:g} s and was stopped; narrow the filter "
        "(a $regex on long text is the usual cause)"
    )


def search_rows(
    session: Session,
    compiler: Compiler,
    project: ProjectKey,
    node: Node,
    order: Order,
    limit: int,
    after: SortKey | None,
) -> tuple[list[tuple[RunRow, SortKey]], int]:
    """Up to ``limit`` runs after ``after`` in ``order`` (each with its sort key), and the total."""
    cond = and_(project_where(project), compiler.where(node))
    joins, rank, num, text, _vtype = compiler.sort_parts(order.field)
    desc = order.descending
    parts: list[tuple[Any, bool, bool]] = [  # (expr, descending, text?)
        (rank, False, False),
        (num, desc, False),
        (text, desc, True),
        (RunRow.run_id, desc, True),
    ]
    # The first page counts the matches in the same statement (a window over the filtered runs,
    # which the sort reads anyway): the filter is evaluated once. Later pages count separately.
    # The sort reads only the key and the run's pk (narrow rows: the thousands of matches are not
    # carried through the join, window and sort with their JSON); the page's runs are loaded after.
    count = func.count().over() if after is None else literal(0)
    stmt = select(RunRow.pk, RunRow.run_id, rank, num, text, count)
    for alias, on in joins:
        stmt = stmt.outerjoin(alias, on)
    stmt = stmt.where(cond)
    if after is not None:
        stmt = stmt.where(_after(compiler, parts, (after.rank, after.num, after.text, after.run_id)))
    ordering = []
    for expr, descending, is_text in parts:
        if _constant(expr):
            continue  # SQLite reads a constant integer in ORDER BY as a column number
        e = compiler.text(expr) if is_text else expr
        ordering.append(e.desc() if descending else e.asc())
    rows = session.execute(stmt.order_by(*ordering).limit(limit)).all()
    loaded = (
        {
            run.pk: run
            for run in session.execute(select(RunRow).where(RunRow.pk.in_([r[0] for r in rows]))).scalars()
        }
        if rows
        else {}
    )
    out = [(loaded[row[0]], SortKey(int(row[2]), float(row[3]), str(row[4]), row[1])) for row in rows]
    if after is None:
        total = int(rows[0][5]) if rows else 0
    else:
        total = int(session.execute(select(func.count()).select_from(RunRow).where(cond)).scalar_one())
    return out, total


def _constant(expr: ColumnElement[Any]) -> bool:
    return expr.__class__.__name__ in ("BindParameter", "Null")


def _after(
    compiler: Compiler, parts: Sequence[tuple[Any, bool, bool]], key: Sequence[Any]
) -> ColumnElement[bool]:
    """Rows strictly after ``key`` in the order of ``parts`` (a lexicographic keyset condition)."""
    terms: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for (expr, descending, is_text), value in zip(parts, key, strict=True):
        e = compiler.text(expr) if is_text else expr
        terms.append(and_(true(), *equal, e < value if descending else e > value))
        equal.append(e == value)
    return or_(*terms)


def group_rows(
    session: Session, compiler: Compiler, project: ProjectKey, node: Node, by: Field
) -> list[RunGroup]:
    """Runs matching ``node`` by their value of ``by``: counts and numeric summary stats per group."""
    if by.many:
        raise InvalidInputError("runs cannot be grouped by their tags (a run has several)")
    joins, rank, num, text, vtype = compiler.sort_parts(by)
    cond = and_(project_where(project), compiler.where(node))
    keys = (vtype, rank, num, text)

    def base(*columns: Any) -> Any:
        stmt = select(*columns).select_from(RunRow)
        for alias, on in joins:
            stmt = stmt.outerjoin(alias, on)
        return stmt.where(cond)

    counted = session.execute(base(*keys, func.count()).group_by(*keys).limit(MAX_GROUPS + 1)).all()
    if len(counted) > MAX_GROUPS:
        raise InvalidInputError(
            f"{by.label} has more than {MAX_GROUPS} distinct values among these runs; group by a key "
            "with fewer values"
        )
    s = aliased(RunValueRow)
    stats_on = and_(
        s.run_pk == RunRow.pk,
        s.kind == _values.KIND_SUMMARY,
        s.vtype.in_(_NUMERIC),
        s.num.is_not(None),
    )
    stats_cols = (s.key, func.count(s.num), func.min(s.num), func.avg(s.num), func.max(s.num))
    stats = session.execute(base(*keys, *stats_cols).join(s, stats_on).group_by(*keys, s.key)).all()
    metrics: dict[tuple[Any, ...], list[GroupMetric]] = {}
    for row in stats:
        metrics.setdefault(tuple(row[:4]), []).append(
            GroupMetric(row[4], int(row[5]), _f(row[6]), _f(row[7]), _f(row[8]))
        )
    groups = []
    for vt, rk, n, t, count in counted:
        group_metrics = sorted(metrics.get((vt, rk, n, t), []), key=lambda m: m.key)
        groups.append(
            (int(rk), n, t, RunGroup(_decode(vt, n, t), vt or "", int(count), tuple(group_metrics)))
        )
    groups.sort(key=lambda g: (g[0], g[1] if g[1] is not None else 0.0, g[2] or ""))
    return [g[3] for g in groups]


def _f(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _decode(vtype: str | None, num: float | None, text: str | None) -> Any:
    """A group's value as the run's config or summary holds it."""
    if vtype in (ValueType.INT.value,):
        return int(num) if num is not None and abs(num) != float("inf") else num
    if vtype == ValueType.FLOAT.value:
        return float("nan") if num is None else num
    if vtype == ValueType.BOOL.value:
        return bool(num)
    if vtype == ValueType.STR.value:
        return text
    return None


def describe_rows(session: Session, project: ProjectKey) -> tuple[int, list[KeyDescription]]:
    """How many runs the project has, and its config and summary keys with types and ranges."""
    runs = int(
        session.execute(select(func.count()).select_from(RunRow).where(project_where(project))).scalar_one()
    )
    v = RunValueRow
    kinds = {_values.KIND_CONFIG: "config", _values.KIND_SUMMARY: "summary"}
    rows = session.execute(
        select(v.kind, v.key, v.vtype, func.count(), func.min(v.num), func.max(v.num))
        .join(RunRow, RunRow.pk == v.run_pk)
        .where(project_where(project), v.kind.in_(list(kinds)))
        .group_by(v.kind, v.key, v.vtype)
        .order_by(v.kind, v.key)
    ).all()
    by_key: dict[tuple[int, str], list[Any]] = {}
    for kind, key, vtype, count, lo, hi in rows:
        by_key.setdefault((kind, key), []).append((vtype, int(count), lo, hi))
    out = []
    for (kind, key), types in by_key.items():
        numeric = [(lo, hi) for vtype, _c, lo, hi in types if vtype in _NUMERIC and lo is not None]
        out.append(
            KeyDescription(
                kind=kinds[kind],
                key=key,
                count=sum(c for _t, c, _l, _h in types),
                types=tuple(sorted(((t, c) for t, c, _l, _h in types), key=lambda tc: (-tc[1], tc[0]))),
                min=min(lo for lo, _hi in numeric) if numeric else None,
                max=max(hi for _lo, hi in numeric) if numeric else None,
            )
        )
    out.sort(key=lambda d: (d.kind != "config", d.key))
    return runs, out
