"""Searches agree with a Python reference implementation on a project of 10,000 runs with 20 config
and 20 summary keys each, on SQLite and PostgreSQL: hypothesis generates filters (every operator),
orders and page sizes; the store's pages and total must be exactly the reference's.

The project is built once per backend with bulk inserts of run rows and of their searchable values
(derived by the store's own ``_values``, as ingest derives them); the reference reads the documents
the runs were made from, never the database.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Table, insert, select

from tracklog._history import dumps
from tracklog_server import SqlAlchemyStore
from tracklog_server._entities import ProjectKey
from tracklog_server.application import _search
from tracklog_server.application._runs import ANONYMOUS
from tracklog_server.storage import _values
from tracklog_server.storage._models import RunRow, RunValueRow

from .conftest import BACKENDS, PostgresDatabases

pytestmark = pytest.mark.slow

P = ProjectKey("bench", "big")
RUNS = 10_000
KEYS = 20
STATES = ["running", "finished", "failed", "killed", "crashed"]
WORDS = ["alpha", "beta", "Gamma", "delta-1", "é", "z", "", "10", "9", "it's"]
NUMBERS = [0, 1, 2, 3, -1, 0.5, 2.5, 1e-3, 1e6, math.inf, -math.inf, math.nan]
TAGS = ["a", "b", "c", "d"]
TEXT_COLUMNS = ["state", "name", "id", "group", "job_type", "host"]
NUMBER_COLUMNS = ["created_at", "heartbeat_at", "runtime"]


def _value(rng: random.Random, i: int) -> Any:
    """Key i holds mostly one type (as real configs do) and sometimes another, or nothing."""
    roll = rng.random()
    if roll < 0.08:
        return None if rng.random() < 0.5 else [1, 2]
    if roll < 0.15:
        return rng.random() < 0.5  # a bool
    if roll < 0.3 or i % 4 == 3:
        return rng.choice(WORDS)
    if i % 4 == 0:
        return rng.randint(-3, 12)
    return rng.choice(NUMBERS) if rng.random() < 0.5 else round(rng.uniform(-5, 5), 2)


def _doc(rng: random.Random, prefix: str) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for i in range(KEYS):
        if rng.random() < 0.1:
            continue  # this run lacks the key
        if i == 7:  # a nested key: c7.inner
            doc[f"{prefix}{i}"] = {"inner": _value(rng, i)}
        else:
            doc[f"{prefix}{i}"] = _value(rng, i)
    return doc


def make_runs(seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    runs = []
    for n in range(RUNS):
        created = 1_700_000_000.0 + rng.randint(0, 5000)  # ties on purpose
        heartbeat = created + rng.choice([0.0, 10.0, 100.0])
        runs.append(
            {
                "id": f"r{n:05d}",
                "name": rng.choice(WORDS) + str(rng.randint(0, 3)),
                "state": rng.choice(STATES),
                "group": rng.choice(["", "g1", "g2"]),
                "job_type": rng.choice(["", "train", "eval"]),
                "host": rng.choice(["", "box1", "box2"]),
                "created_at": created,
                "heartbeat_at": heartbeat,
                "runtime": rng.choice([None, 5.0, 50.0]),
                "tags": sorted(rng.sample(TAGS, rng.randint(0, 3))),
                "user": rng.choice([None, "ann", "bob"]),
                "config": _doc(rng, "c"),
                "summary": _doc(rng, "s"),
            }
        )
    return runs


class _Docs:
    def __init__(self, pk: int, run: Mapping[str, Any]) -> None:
        self.pk = pk
        self.config_json = dumps(run["config"])
        self.summary_json = dumps(run["summary"])
        self.summary_removed: list[str] = []
        self.tags: list[str] = run["tags"]
        self.metadata_json = dumps({"username": run["user"]} if run["user"] else {})


def load(store: SqlAlchemyStore, runs: list[dict[str, Any]]) -> None:
    """Bulk-inserts the runs and their searchable values, as ingest would have written them."""
    table = cast(Table, RunRow.__table__)
    values_table = cast(Table, RunValueRow.__table__)
    rows = []
    for run in runs:
        docs = _Docs(0, run)
        rows.append(
            {
                "entity": P.entity, "project": P.project, "run_id": run["id"], "name": run["name"],
                "notes": "", "tags": run["tags"], "run_group": run["group"], "job_type": run["job_type"],
                "state": run["state"], "exit_code": 0, "finish_reason": "", "created_at": run["created_at"],
                "heartbeat_at": run["heartbeat_at"], "finished_at": None, "config_json": docs.config_json,
                "summary_json": docs.summary_json, "summary_removed": [], "metadata_json": docs.metadata_json,
                "host": run["host"], "run_dir": "", "last_seq": 1, "history_rows": 0, "last_step": -1,
                "runtime": run["runtime"], "tracked_seconds": None, "writer_hash": "", "client_tags": [],
            }
        )  # fmt: skip
    with store.engine.begin() as conn:
        for i in range(0, len(rows), 2000):
            conn.execute(insert(table), rows[i : i + 2000])
        pks = dict(conn.execute(select(table.c.run_id, table.c.pk).where(table.c.project == P.project)).all())
        values = []
        for run in runs:
            docs = _Docs(pks[run["id"]], run)
            for kind in (_values.KIND_CONFIG, _values.KIND_SUMMARY, _values.KIND_TAG, _values.KIND_USER):
                for key, (vtype, num, text) in _values.values_of(kind, docs, []).items():
                    values.append((docs.pk, kind, key, str(vtype), num, text))
        if conn.dialect.name == "postgresql":  # COPY: several times faster than multi-row INSERTs
            raw: Any = conn.connection.dbapi_connection
            with (
                raw.cursor() as cursor,
                cursor.copy("COPY run_values (run_pk, kind, key, vtype, num, text) FROM STDIN") as copy,
            ):
                for value in values:
                    copy.write_row(value)
        else:
            columns = ("run_pk", "kind", "key", "vtype", "num", "text")
            conn.execute(insert(values_table), [dict(zip(columns, v, strict=True)) for v in values])
    with store.engine.connect() as conn:  # after a bulk load, as autovacuum would soon: the planner's
        conn.exec_driver_sql("ANALYZE")  # statistics (without them PostgreSQL picks nested loops)
        conn.commit()


# -- the reference: the semantics of _filter_ast, over the documents -------------------------------


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class Ref:
    """One run as the reference sees it: each field's values, typed."""

    def __init__(self, run: Mapping[str, Any]) -> None:
        self.run = run
        self.config = flatten(run["config"])
        self.summary = flatten(run["summary"])

    def values(self, path: str) -> list[Any]:
        """The field's values (empty: the run has none)."""
        run = self.run
        if path in ("name", "display_name", "state", "id", "group", "job_type", "host"):
            value = run["name" if path == "display_name" else path]
            return [] if path in ("group", "job_type", "host") and value == "" else [value]
        if path == "runtime":
            return [run["runtime"] if run["runtime"] is not None else run["heartbeat_at"] - run["created_at"]]
        if path in ("created_at", "heartbeat_at"):
            return [run[path]]
        if path == "tags":
            return list(run["tags"])
        if path == "user":
            return [run["user"]] if run["user"] else []
        kind, key = path.split(".", 1)
        doc = self.config if kind == "config" else self.summary
        keys = [key, key[: -len(".value")]] if kind == "config" and key.endswith(".value") else [key]
        return [doc[k] for k in keys if k in doc]


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _eq(v: Any, lit: Any) -> bool:
    if isinstance(lit, bool):
        return isinstance(v, bool) and v == lit
    if lit is None:
        return v is None
    if isinstance(lit, str):
        return isinstance(v, str) and v == lit
    return _is_num(v) and v == lit


def _cmp(v: Any, op: str, lit: Any) -> bool:
    if isinstance(lit, str):
        if not isinstance(v, str):
            return False
    elif not _is_num(v):
        return False
    return {"$gt": v > lit, "$gte": v >= lit, "$lt": v < lit, "$lte": v <= lit}[op]


def matches(ref: Ref, node: Mapping[str, Any]) -> bool:
    for key, arg in node.items():
        if key == "$and" and not all(matches(ref, n) for n in arg):
            return False
        if key == "$or" and not any(matches(ref, n) for n in arg):
            return False
        if key == "$nor" and any(matches(ref, n) for n in arg):
            return False
        if key == "$not" and matches(ref, arg):
            return False
        cond = _times(arg) if key in ("created_at", "heartbeat_at") else arg
        if not key.startswith("$") and not field_matches(ref.values(key), cond):
            return False
    return True


def _times(cond: Any) -> Any:
    """ISO 8601 strings in a time condition as unix seconds (UTC unless they say otherwise)."""
    if isinstance(cond, str):
        when = datetime.fromisoformat(cond)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if isinstance(cond, dict):
        return {k: _times(v) for k, v in cond.items()}
    if isinstance(cond, list):
        return [_times(v) for v in cond]
    return cond


def field_matches(values: list[Any], cond: Any) -> bool:
    if not isinstance(cond, dict):
        cond = {"$eq": cond}
    for op, arg in cond.items():
        if op == "$eq":
            ok = any(_eq(v, arg) for v in values)
        elif op == "$ne":
            ok = bool(values) and not any(_eq(v, arg) for v in values)
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            ok = any(_cmp(v, op, arg) for v in values)
        elif op == "$in":
            ok = any(_eq(v, a) for v in values for a in arg)
        elif op == "$nin":
            ok = bool(values) and not any(_eq(v, a) for v in values for a in arg)
        elif op == "$exists":
            ok = bool(values) == arg
        elif op == "$regex":
            ok = any(isinstance(v, str) and re.search(arg, v, re.DOTALL) for v in values)
        else:
            assert op == "$not"
            ok = not field_matches(values, arg)
        if not ok:
            return False
    return True


def sort_key(ref: Ref, path: str, descending: bool) -> tuple[Any, ...]:
    values = ref.values(path)
    sign = -1 if descending else 1
    if not values:
        rank, num, text = 3, 0.0, ""
    elif _is_num(values[0]) and not math.isnan(values[0]):
        rank, num, text = 0, float(values[0]), ""
    elif isinstance(values[0], str):
        rank, num, text = 1, 0.0, values[0]
    else:
        rank, num, text = 2, 0.0, ""
    # Descending strings: compare by negated code points (a longer string after its prefix).
    return (rank, sign * num, _directed(text, descending), _directed(ref.run["id"], descending))


class _Rev:
    def __init__(self, s: str) -> None:
        self.s = s

    def __lt__(self, other: _Rev) -> bool:
        return self.s > other.s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Rev) and self.s == other.s

    __hash__ = None  # type: ignore[assignment]


def _directed(s: str, descending: bool) -> Any:
    return _Rev(s) if descending else s


# -- strategies ---------------------------------------------------------------------------------

CONFIG_FIELDS = [f"config.c{i}" for i in range(KEYS) if i != 7] + [
    "config.c7.inner",
    "config.c3.value",
    "config.nope",
]
SUMMARY_FIELDS = [f"summary.s{i}" for i in range(KEYS) if i != 7] + ["summary.s7.inner"]
SCALARS = st.sampled_from([*NUMBERS[:-1], *WORDS, True, False, None, 7, 1.5])
PATTERNS = st.sampled_from(["^a", "a$", "[0-9]", "l.h", "^$", "ta|mm", "\\d+", "^[A-Z]", "é", "'"])


def _condition(field: str) -> st.SearchStrategy[Any]:
    if field in NUMBER_COLUMNS:
        lit: st.SearchStrategy[Any] = st.sampled_from(
            [1_700_000_000.0, 1_700_002_500.0, 1_700_005_000.0, 5.0, 50.0, 0.0]
        )
    elif field in TEXT_COLUMNS or field in ("tags", "user", "display_name"):
        lit = st.sampled_from(
            [*WORDS, "alpha1", "finished", "g1", "train", "box2", "a", "b", "ann", "r00042"]
        )
    else:
        lit = SCALARS
    ordered = lit.filter(lambda v: isinstance(v, str) or (_is_num(v) and not isinstance(v, bool)))
    op = st.one_of(
        lit,
        st.builds(lambda v: {"$eq": v}, lit),
        st.builds(lambda v: {"$ne": v}, lit),
        st.builds(lambda o, v: {o: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ordered),
        st.builds(lambda vs: {"$in": vs}, st.lists(lit, max_size=3)),
        st.builds(lambda vs: {"$nin": vs}, st.lists(lit, max_size=3)),
        st.builds(lambda b: {"$exists": b}, st.booleans()),
    )
    if field not in NUMBER_COLUMNS:
        op = st.one_of(op, st.builds(lambda p: {"$regex": p}, PATTERNS))
    return st.one_of(op, st.builds(lambda c: {"$not": c if isinstance(c, dict) else {"$eq": c}}, op))


FIELDS = st.sampled_from(
    CONFIG_FIELDS + SUMMARY_FIELDS + TEXT_COLUMNS + NUMBER_COLUMNS + ["tags", "user", "display_name"]
)
LEAVES = FIELDS.flatmap(lambda f: _condition(f).map(lambda c: {f: c}))
FILTERS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$nor": xs}, st.lists(inner, min_size=1, max_size=2)),
        st.builds(lambda x: {"$not": x}, inner),
    ),
    max_leaves=5,
)
ORDER_FIELDS = st.sampled_from(CONFIG_FIELDS + SUMMARY_FIELDS + TEXT_COLUMNS + NUMBER_COLUMNS + ["user"])
ORDERS = st.builds(lambda sign, f: sign + f, st.sampled_from(["+", "-", ""]), ORDER_FIELDS)


class Project:
    def __init__(self, store: SqlAlchemyStore, runs: list[dict[str, Any]]) -> None:
        self.store = store
        self.refs = [Ref(run) for run in runs]

    def expected(self, filters: Mapping[str, Any], order: str) -> list[str]:
        descending = order.startswith("-")
        path = order.lstrip("+-")
        found = [ref for ref in self.refs if matches(ref, filters)]
        found.sort(key=lambda ref: sort_key(ref, path, descending))
        return [ref.run["id"] for ref in found]

    def check(self, filters: Mapping[str, Any], order: str, per_page: int, pages: int = 3) -> None:
        expected = self.expected(filters, order)
        got: list[str] = []
        cursor = None
        for _ in range(pages):
            page = _search.search_runs(self.store, ANONYMOUS, P, filters, order, per_page, cursor)
            assert page.total == len(expected), (filters, order)
            got += [r.key.id for r in page.runs]
            cursor = page.next_cursor
            if not cursor:
                break
        assert got == expected[: len(got)], (filters, order)
        assert len(got) == min(len(expected), per_page * pages)


@pytest.fixture(scope="module", params=BACKENDS)
def project(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_databases: PostgresDatabases,
) -> Iterator[Project]:
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('search')) / 'big.db'}"
    else:
        url = postgres_databases.create()
    store = SqlAlchemyStore(url)
    runs = make_runs()
    load(store, runs)
    yield Project(store, runs)
    store.close()


@given(filters=FILTERS, order=ORDERS, per_page=st.integers(1, 400))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_search_returns_what_the_python_reference_returns(
    project: Project, filters: dict[str, Any], order: str, per_page: int
) -> None:
    project.check(filters, order, per_page)


@pytest.mark.parametrize(
    "filters",
    [
        {"config.c1": {"$eq": 0.5}},
        {"config.c0": {"$ne": 3}},
        {"summary.s2": {"$gt": 1}},
        {"summary.s2": {"$gte": "beta"}},
        {"config.c4": {"$lt": 0}},
        {"config.c5": {"$lte": -math.inf}},
        {"tags": {"$in": ["a", "d"]}},
        {"config.c3": {"$nin": ["z", "10"]}},
        {"config.c7.inner": {"$exists": False}},
        {"name": {"$regex": "^[a-z]+1$"}},
        {"config.c3.value": {"$regex": "^a"}},
        {"summary.s9": {"$not": {"$gt": 0}}},
        {"$and": [{"state": "finished"}, {"config.c0": {"$gte": 5}}]},
        {"$or": [{"user": "ann"}, {"group": "g1"}]},
        {"$nor": [{"tags": "a"}, {"host": {"$exists": False}}]},
        {"$not": {"job_type": "train"}},
        {"created_at": {"$gte": "2023-11-14T22:30:00Z"}, "runtime": {"$lt": 10}},
    ],
)
def test_each_operator_returns_what_the_python_reference_returns(
    project: Project, filters: dict[str, Any]
) -> None:
    project.check(filters, "-summary.s1", 100, pages=2)


def test_walking_every_page_of_a_large_result_yields_each_run_once(project: Project) -> None:
    project.check({"state": {"$in": ["finished", "failed"]}}, "+config.c1", 500, pages=100)
