"""Searching, grouping and describing runs in the store, on SQLite and PostgreSQL, with runs made by
real ingest and edited through the application layer: what the searchable copy of config, summary,
tags and user holds, how values compare and sort, keyset pages, hostile input, time limits."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import inspect

from tracklog_server import RunKey, SqlAlchemyStore
from tracklog_server._entities import ProjectKey, RunChanges
from tracklog_server._errors import InvalidInputError
from tracklog_server.application import _search
from tracklog_server.application._filters import parse_filters, parse_order
from tracklog_server.application._runs import ANONYMOUS, update_run
from tracklog_server.testing import FakeClock

from .helpers import (
    RunWriter,
    history_record,
    metadata_record,
    start_record,
    summary_record,
    update_record,
)

P = ProjectKey("alice", "search")


def make_run(
    store: SqlAlchemyStore,
    run_id: str,
    *,
    config: Mapping[str, Any] | None = None,
    logged: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
    **start: Any,
) -> RunWriter:
    key = RunKey(P.entity, P.project, run_id)
    w = RunWriter(key)
    records = [start_record(key, config=dict(config or {}), **start)]
    if logged:
        records.append(history_record([(0, logged)]))
    if summary:
        records.append(summary_record(summary))
    assert store.ingest(key, w.frames(*records)).accepted
    return w


def ids(
    filters: Mapping[str, Any] | None, store: SqlAlchemyStore, order: str | None = "+id", per_page: int = 50
) -> list[str]:
    """Every matching run id, walking all pages."""
    out: list[str] = []
    cursor = None
    while True:
        page = _search.search_runs(store, ANONYMOUS, P, filters, order, per_page, cursor)
        out += [r.key.id for r in page.runs]
        if not page.next_cursor:
            assert page.total == len(out)
            return out
        cursor = page.next_cursor


def test_config_summary_and_tags_are_found_as_ingest_writes_them(store: SqlAlchemyStore) -> None:
    make_run(
        store, "a", config={"lr": 0.1, "opt": {"name": "adam", "beta": 0.9}}, tags=["x"], logged={"acc": 0.5}
    )
    make_run(
        store, "b", config={"lr": 0.01, "opt": {"name": "sgd"}}, logged={"acc": 0.7}, summary={"best": 1}
    )
    assert ids({"config.lr": {"$lt": 0.05}}, store) == ["b"]
    assert ids({"config.opt.name": "adam"}, store) == ["a"]
    assert ids({"config.opt.beta": {"$exists": True}}, store) == ["a"]
    assert ids({"summary.acc": {"$gte": 0.6}}, store) == ["b"]
    assert ids({"summary.best": 1}, store) == ["b"]
    assert ids({"tags": "x"}, store) == ["a"]
    assert ids({"tags": {"$exists": False}}, store) == ["b"]


def test_the_searchable_copy_follows_every_later_change(store: SqlAlchemyStore) -> None:
    w = make_run(store, "a", config={"lr": 0.1}, logged={"acc": 0.5, "loss": 2.0}, tags=["t"])
    key = w.key
    store.ingest(key, w.frames(history_record([(1, {"acc": 0.9})]), update_record(tags=["t", "u"])))
    store.ingest(key, w.frames(summary_record({"best": 3}, removed=["loss"])))
    store.ingest_daemon(key, [(1, metadata_record({"username": "bob"}))])
    assert ids({"summary.acc": 0.9, "summary.best": 3, "tags": "u", "user": "bob"}, store) == ["a"]
    assert ids({"summary.loss": {"$exists": True}}, store) == []  # removed from the summary
    changes = RunChanges(config={"lr": 0.5}, summary={"acc": 0.1}, remove_tags=("t",), add_tags=("api",))
    update_run(store, ANONYMOUS, key, changes)
    assert ids({"config.lr": 0.5, "summary.acc": 0.1, "tags": {"$nin": ["t"]}}, store) == ["a"]
    assert ids({"tags": "api"}, store) == ["a"]
    store.ingest(key, w.frames(history_record([(2, {"loss": 1.0})])))  # logged again: shows again
    assert ids({"summary.loss": 1.0}, store) == ["a"]
    # What search holds is what get_run shows.
    found = _search.search_runs(store, ANONYMOUS, P, {"id": "a"}, None, 1).runs[0]
    assert found == store.get_run(key)


def test_nan_and_infinities_round_trip_and_nan_never_compares(store: SqlAlchemyStore) -> None:
    make_run(store, "nan", config={"x": math.nan}, logged={"v": math.nan})
    make_run(store, "inf", config={"x": math.inf}, logged={"v": math.inf})
    make_run(store, "ninf", config={"x": -math.inf}, logged={"v": -math.inf})
    make_run(store, "one", config={"x": 1}, logged={"v": 1.0})
    summary = _search.search_runs(store, ANONYMOUS, P, {"id": "nan"}, None, 1).runs[0].summary_json
    assert "NaN" in summary
    assert ids({"config.x": {"$gt": 1e308}}, store) == ["inf"]
    assert ids({"summary.v": {"$lt": -1e308}}, store) == ["ninf"]
    assert ids({"summary.v": math.inf}, store) == ["inf"]
    assert ids({"config.x": {"$gte": -math.inf}}, store) == ["inf", "ninf", "one"]
    assert ids({"config.x": {"$exists": True}}, store) == ["inf", "nan", "ninf", "one"]
    assert ids({"config.x": {"$ne": 1}}, store) == ["inf", "nan", "ninf"]  # NaN is not equal to 1
    assert ids(None, store, "-config.x") == ["inf", "one", "ninf", "nan"]  # NaN sorts with "other"


def test_numbers_compare_as_numbers_and_strings_as_strings(store: SqlAlchemyStore) -> None:
    make_run(store, "n9", config={"v": 9})
    make_run(store, "n10", config={"v": 10.0})
    make_run(store, "s10", config={"v": "10"})
    make_run(store, "s9", config={"v": "9"})
    make_run(store, "t", config={"v": True})
    make_run(store, "none", config={"v": None})
    make_run(store, "missing")
    assert ids({"config.v": {"$gt": 9}}, store) == ["n10"]
    assert ids({"config.v": {"$gt": "10"}}, store) == ["s9"]  # by code point: "9" > "10"
    assert ids({"config.v": 10}, store) == ["n10"]
    assert ids({"config.v": True}, store) == ["t"]
    assert ids({"config.v": 1}, store) == []  # a bool is not the number 1
    assert ids({"config.v": None}, store) == ["none"]
    assert ids({"config.v": {"$in": [9, "9"]}}, store) == ["n9", "s9"]
    # A missing key never matches a comparison, $ne and $nin included; $not and $nor negate.
    assert "missing" not in ids({"config.v": {"$ne": 5}}, store)
    assert "missing" not in ids({"config.v": {"$nin": [5]}}, store)
    assert "missing" in ids({"config.v": {"$not": {"$eq": 5}}}, store)
    assert "missing" in ids({"$nor": [{"config.v": 9}]}, store)
    # Sorted: numbers, then strings (by code point), then other values, then runs without the key.
    assert ids(None, store, "+config.v") == ["n9", "n10", "s10", "s9", "none", "t", "missing"]
    assert ids(None, store, "-config.v") == ["n10", "n9", "s9", "s10", "t", "none", "missing"]


def test_columns_filter_and_sort(store: SqlAlchemyStore, clock: FakeClock) -> None:
    make_run(store, "a", name="first", group="g1", job_type="train", host="box1", start_time=100.0)
    make_run(store, "b", name="second", host="box2", start_time=200.0)
    assert ids({"display_name": {"$regex": "^sec"}}, store) == ["b"]
    assert ids({"group": "g1", "job_type": "train"}, store) == ["a"]
    assert ids({"group": {"$exists": False}}, store) == ["b"]  # no group is no value
    assert ids({"created_at": {"$gt": 150}}, store) == ["b"]
    assert ids({"created_at": {"$lt": "1970-01-01T00:02:00Z"}}, store) == ["a"]
    assert ids({"state": {"$in": ["running", "finished"]}, "host": {"$ne": "box1"}}, store) == ["b"]
    assert ids({"runtime": {"$gte": 0}}, store) == ["a", "b"]
    assert ids(None, store, None) == ["b", "a"]  # newest first by default
    assert ids(None, store, "-name") == ["b", "a"]


def test_config_value_reads_as_wandb_users_write_it(store: SqlAlchemyStore) -> None:
    make_run(store, "plain", config={"lr": 0.1})
    make_run(store, "nested", config={"lr": {"value": 0.2}})
    assert ids({"config.lr.value": {"$gt": 0}}, store) == ["nested", "plain"]
    assert ids(None, store, "-config.lr.value") == ["nested", "plain"]


def test_keyset_pages_neither_repeat_nor_skip_runs_while_runs_are_added(store: SqlAlchemyStore) -> None:
    for i in range(7):
        make_run(store, f"r{i}", config={"k": i % 3})  # ties on k are broken by id
    first = _search.search_runs(store, ANONYMOUS, P, None, "-config.k", 3)
    assert first.total == 7
    make_run(store, "a-new-top", config={"k": 99})  # sorts before the page already read
    seen = [r.key.id for r in first.runs]
    cursor = first.next_cursor
    while cursor:
        page = _search.search_runs(store, ANONYMOUS, P, None, "-config.k", 3, cursor)
        seen += [r.key.id for r in page.runs]
        cursor = page.next_cursor
    assert seen == ["r5", "r2", "r4", "r1", "r6", "r3", "r0"]


def test_a_cursor_is_refused_with_another_order_or_when_forged(store: SqlAlchemyStore) -> None:
    for i in range(3):
        make_run(store, f"r{i}")
    page = _search.search_runs(store, ANONYMOUS, P, None, "+id", 1)
    with pytest.raises(InvalidInputError, match="belongs to order"):
        _search.search_runs(store, ANONYMOUS, P, None, "-id", 1, page.next_cursor)
    for forged in ("nope", "W10=", "e30=", "!!!"):
        with pytest.raises(InvalidInputError, match="not one this server handed out"):
            _search.search_runs(store, ANONYMOUS, P, None, "+id", 1, forged)
    with pytest.raises(InvalidInputError, match="per_page"):
        _search.search_runs(store, ANONYMOUS, P, None, "+id", 0)


HOSTILE = [
    "it's",
    'say "hi"',
    "'; DROP TABLE runs; --",
    "x' OR '1'='1",
    "%_%",
    "\\",
    "ü ☃ 𝄞",
    "a\nb",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_are_data_never_sql(store: SqlAlchemyStore, text: str) -> None:
    make_run(store, "target", name=text, config={"s": text}, tags=[text])
    make_run(store, "other", name="plain", config={"s": "plain"})
    for filters in ({"name": text}, {"config.s": text}, {"tags": text}, {"config.s": {"$in": [text]}}):
        assert ids(filters, store) == ["target"]
    assert ids({"name": {"$gt": text}}, store) == (["other"] if text < "plain" else [])
    assert set(inspect(store.engine).get_table_names()) >= {"runs", "run_values"}
    assert len(ids(None, store)) == 2


def test_a_regex_matches_strings_anywhere_on_both_databases(store: SqlAlchemyStore) -> None:
    make_run(store, "a", name="val-loss", config={"path": "runs/a\nb"}, tags=["Keep"])
    make_run(store, "b", name="train", config={"path": 3})
    assert ids({"name": {"$regex": "loss$"}}, store) == ["a"]
    assert ids({"config.path": {"$regex": "a.b"}}, store) == ["a"]  # "." matches a newline on both
    assert ids({"config.path": {"$regex": "3"}}, store) == []  # a number is not a string
    assert ids({"tags": {"$regex": "^K"}}, store) == ["a"]
    assert ids({"tags": {"$regex": "^k"}}, store) == []  # case matters


def test_a_query_past_its_time_limit_stops_with_a_clear_error(store: SqlAlchemyStore) -> None:
    for i in range(20):
        make_run(store, f"r{i}", config={"blob": "a" * 400_000})
    where = parse_filters({"config.blob": {"$regex": "z"}})
    with pytest.raises(InvalidInputError, match="took longer than"):
        store.search_runs(P, where, parse_order(None), 10, None, timeout=0.001)
    # The connection is usable again, without the limit.
    assert ids({"config.blob": {"$regex": "z"}}, store) == []


def test_deleted_runs_are_never_found(store: SqlAlchemyStore) -> None:
    make_run(store, "a", config={"k": 1})
    make_run(store, "b", config={"k": 1})
    make_run(store, "c", config={"k": 2})
    assert _search.delete_by_filter(store, ANONYMOUS, P, {"config.k": 1}, dry_run=True) == [
        RunKey(P.entity, P.project, "a"),
        RunKey(P.entity, P.project, "b"),
    ]
    assert ids(None, store) == ["a", "b", "c"]  # a dry run deletes nothing
    assert len(_search.delete_by_filter(store, ANONYMOUS, P, {"config.k": 1}, dry_run=False)) == 2
    assert ids(None, store) == ["c"]
    assert _search.describe_project(store, ANONYMOUS, P).runs == 1
    with pytest.raises(InvalidInputError, match="needs a filter"):
        _search.delete_by_filter(store, ANONYMOUS, P, {}, dry_run=True)


def test_groups_count_runs_and_summarize_numeric_summary_keys(store: SqlAlchemyStore) -> None:
    make_run(store, "a", config={"opt": "adam"}, logged={"acc": 0.5, "note": "x"})
    make_run(store, "b", config={"opt": "adam"}, logged={"acc": 0.7, "loss": math.nan})
    make_run(store, "c", config={"opt": "sgd"}, logged={"acc": 0.1})
    make_run(store, "d", config={"opt": 3}, logged={"loss": 2.0})
    make_run(store, "e")
    groups = _search.group_runs(store, ANONYMOUS, P, "config.opt", None)
    assert [(g.value, g.type, g.count) for g in groups] == [
        (3, "int", 1),
        ("adam", "str", 2),
        ("sgd", "str", 1),
        (None, "", 1),
    ]
    adam = {m.key: m for m in groups[1].metrics}
    assert set(adam) == {"acc"}  # NaN and strings are no numbers
    assert (adam["acc"].count, adam["acc"].min, adam["acc"].max) == (2, 0.5, 0.7)
    assert adam["acc"].mean == pytest.approx(0.6)
    by_state = _search.group_runs(store, ANONYMOUS, P, "state", {"config.opt": {"$exists": True}})
    assert [(g.value, g.count) for g in by_state] == [("running", 4)]
    with pytest.raises(InvalidInputError, match="tags"):
        _search.group_runs(store, ANONYMOUS, P, "tags", None)


def test_describing_a_project_lists_keys_types_and_ranges(store: SqlAlchemyStore) -> None:
    make_run(store, "a", config={"lr": 0.1, "opt": {"name": "adam"}}, logged={"acc": 0.5})
    make_run(store, "b", config={"lr": 1, "opt": {"name": "sgd"}}, logged={"acc": math.inf})
    make_run(store, "c", config={"lr": "auto"})
    found = _search.describe_project(store, ANONYMOUS, P)
    assert found.runs == 3
    keys = {(k.kind, k.key): k for k in found.keys}
    assert list(keys) == [("config", "lr"), ("config", "opt.name"), ("summary", "acc")]
    lr = keys[("config", "lr")]
    assert (lr.count, dict(lr.types), lr.min, lr.max) == (3, {"float": 1, "int": 1, "str": 1}, 0.1, 1.0)
    assert keys[("config", "opt.name")].types == (("str", 2),)
    assert keys[("summary", "acc")].max == math.inf


def test_searches_stay_inside_their_project(store: SqlAlchemyStore) -> None:
    make_run(store, "mine")
    other = RunKey("alice", "elsewhere", "theirs")
    store.ingest(other, RunWriter(other).frames(start_record(other)))
    assert ids(None, store) == ["mine"]
    assert _search.describe_project(store, ANONYMOUS, ProjectKey("alice", "elsewhere")).runs == 1


def test_a_page_of_large_runs_ends_early_and_the_next_page_goes_on(store: SqlAlchemyStore) -> None:
    big = "x" * (9 * 1024 * 1024)  # three runs' configs outgrow one page's 24 MiB
    for i in range(4):
        make_run(store, f"r{i}", config={"blob": big})
    first = _search.search_runs(store, ANONYMOUS, P, None, "+id", 50)
    assert ([r.key.id for r in first.runs], first.total) == (["r0", "r1"], 4)
    assert ids(None, store, "+id", 50) == ["r0", "r1", "r2", "r3"]
