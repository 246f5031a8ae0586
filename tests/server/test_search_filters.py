"""Parsing run filters and orders as wandb users write them: every operator, every refusal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracklog_server._errors import InvalidInputError
from tracklog_server._filter_ast import (
    MATCH_ALL,
    And,
    Cmp,
    CmpOp,
    Exists,
    Field,
    FieldKind,
    In,
    Not,
    Or,
    Order,
    Regex,
)
from tracklog_server.application._filters import parse_field, parse_filters, parse_order

LR = Field(FieldKind.CONFIG, ("lr",))
ACC = Field(FieldKind.SUMMARY, ("acc",))
STATE = Field(FieldKind.COLUMN, ("state",))
TAGS = Field(FieldKind.TAGS, ("tags",))


def refused(filters: Any) -> str:
    with pytest.raises(InvalidInputError) as info:
        parse_filters(filters)
    return str(info.value)


def test_no_filter_and_an_empty_one_match_every_run() -> None:
    assert parse_filters(None) == MATCH_ALL
    assert parse_filters({}) == MATCH_ALL


@pytest.mark.parametrize(
    ("op", "cmp"),
    [(op.value, op) for op in CmpOp],
)
def test_each_comparison_operator_becomes_a_comparison(op: str, cmp: CmpOp) -> None:
    assert parse_filters({"config.lr": {op: 1}}) == Cmp(LR, cmp, 1.0)


def test_a_bare_value_is_equality_and_numbers_become_floats() -> None:
    assert parse_filters({"state": "finished"}) == Cmp(STATE, CmpOp.EQ, "finished")
    assert parse_filters({"summary.acc": 3}) == Cmp(ACC, CmpOp.EQ, 3.0)
    assert parse_filters({"config.flag": True}) == Cmp(Field(FieldKind.CONFIG, ("flag",)), CmpOp.EQ, True)
    assert parse_filters({"config.x": None}) == Cmp(Field(FieldKind.CONFIG, ("x",)), CmpOp.EQ, None)


def test_in_nin_exists_and_regex() -> None:
    assert parse_filters({"tags": {"$in": ["a", "b"]}}) == In(TAGS, ("a", "b"))
    assert parse_filters({"config.lr": {"$nin": [1, 2]}}) == In(LR, (1.0, 2.0), negate=True)
    assert parse_filters({"summary.acc": {"$exists": False}}) == Exists(ACC, False)
    name = Field(FieldKind.COLUMN, ("name",))
    assert parse_filters({"display_name": {"$regex": "^val"}}) == Regex(name, "^val")


def test_logical_operators_nest() -> None:
    parsed = parse_filters(
        {
            "$and": [{"state": "finished"}, {"$or": [{"config.lr": {"$lt": 0.1}}, {"tags": "x"}]}],
            "$nor": [{"summary.acc": {"$exists": False}}],
        }
    )
    assert parsed == And(
        (
            And((Cmp(STATE, CmpOp.EQ, "finished"), Or((Cmp(LR, CmpOp.LT, 0.1), Cmp(TAGS, CmpOp.EQ, "x"))))),
            Not(Or((Exists(ACC, False),))),
        )
    )


def test_not_negates_a_field_condition_or_a_whole_filter() -> None:
    assert parse_filters({"config.lr": {"$not": {"$gt": 1}}}) == Not(Cmp(LR, CmpOp.GT, 1.0))
    assert parse_filters({"$not": {"state": "running"}}) == Not(Cmp(STATE, CmpOp.EQ, "running"))
    name = Field(FieldKind.COLUMN, ("name",))
    assert parse_filters({"name": {"$not": "^tmp"}}) == Not(Regex(name, "^tmp"))


def test_several_operators_on_one_field_must_all_hold() -> None:
    assert parse_filters({"config.lr": {"$gt": 0, "$lte": 1}}) == And(
        (Cmp(LR, CmpOp.GT, 0.0), Cmp(LR, CmpOp.LTE, 1.0))
    )


def test_fields_are_named_as_wandb_users_name_them() -> None:
    assert parse_field("display_name") == Field(FieldKind.COLUMN, ("name",))
    assert parse_field("createdAt") == Field(FieldKind.COLUMN, ("created_at",))
    assert parse_field("username") == Field(FieldKind.USER, ("user",))
    assert parse_field("summary_metrics.loss") == Field(FieldKind.SUMMARY, ("loss",))
    assert parse_field("config.optimizer.lr") == Field(FieldKind.CONFIG, ("optimizer.lr",))
    # wandb stores config items as {"value": ...}: config.lr.value reads lr (or a nested lr.value).
    assert parse_field("config.lr.value") == Field(FieldKind.CONFIG, ("lr.value", "lr"))
    assert parse_field("summary.train/loss") == Field(FieldKind.SUMMARY, ("train/loss",))


def test_times_compare_as_iso_strings_or_unix_seconds() -> None:
    created = Field(FieldKind.COLUMN, ("created_at",))
    when = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert parse_filters({"created_at": {"$gte": "2026-12-01"}}) == Cmp(created, CmpOp.GTE, when)
    assert parse_filters({"created_at": {"$gte": "2026-12-01T01:00:00+01:00"}}) == Cmp(
        created, CmpOp.GTE, when
    )
    assert parse_filters({"created_at": {"$lt": 5}}) == Cmp(created, CmpOp.LT, 5.0)


def test_orders_default_to_newest_first_and_take_a_sign() -> None:
    created = Field(FieldKind.COLUMN, ("created_at",))
    assert parse_order(None) == Order(created, descending=True)
    assert parse_order("") == Order(created, descending=True)
    assert parse_order("-summary.acc") == Order(ACC, descending=True)
    assert parse_order("+config.lr") == Order(LR, descending=False)
    assert parse_order("name") == Order(Field(FieldKind.COLUMN, ("name",)), descending=False)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"config.lr": {"$gtt": 1}}, "unknown operator '$gtt'"),
        ({"$xor": []}, "unknown operator '$xor'"),
        ({"$gt": 1}, "it applies to a field"),
        ({"bogus": 1}, "unknown field 'bogus'"),
        ({"config.": 1}, "names no key"),
        ({"$or": []}, "non-empty list"),
        ({"$and": {"a": 1}}, "non-empty list"),
        ({"$or": [1]}, "takes filter objects"),
        ({"$not": []}, "$not takes a filter object"),
        ({"config.lr": {"$in": 1}}, "$in takes a list"),
        ({"config.lr": {"$exists": "yes"}}, "$exists takes true or false"),
        ({"config.lr": {"$regex": 3}}, "$regex takes a string"),
        ({"config.lr": {"$gt": True}}, "$gt compares numbers or strings"),
        ({"config.lr": {"$lt": None}}, "$lt compares numbers or strings"),
        ({"config.lr": {}}, "an empty object"),
        ({"config.lr": {"a": 1}}, "comparing with an object"),
        ({"config.lr": [1, 2]}, "use $in"),
        ({"config.lr": float("nan")}, "NaN equals nothing"),
        ({"config.lr": 10**400}, "out of range"),
        ({"state": 3}, "state compares with strings"),
        ({"tags": {"$gt": 1}}, "tags compares with strings"),
        ({"runtime": "long"}, "runtime compares with numbers"),
        ({"created_at": "yesterday"}, "not an ISO 8601 time"),
        ({"created_at": {"$regex": "1"}}, "$regex matches strings"),
        ({"name": "a\x00b"}, "NUL"),
        ({"name": "\ud800"}, "lone surrogate"),
        ({"name": "x" * 70_000}, "the limit is"),
        ({"config.lr": {"$in": list(range(1001))}}, "the limit is 1000"),
    ],
)
def test_a_malformed_filter_is_refused_naming_the_offending_part(filters: Any, message: str) -> None:
    assert message in refused(filters)


def test_the_error_says_where_in_the_filter_the_problem_is() -> None:
    message = refused({"$or": [{"state": "finished"}, {"config.lr": {"$gtt": 1}}]})
    assert message.startswith("filters['$or'][1]['config.lr']['$gtt']: unknown operator")


def test_filters_that_nest_too_deep_or_hold_too_many_conditions_are_refused() -> None:
    deep: dict[str, Any] = {"state": "finished"}
    for _ in range(40):
        deep = {"$and": [deep]}
    assert "deeper than" in refused(deep)
    assert "more than 1000 conditions" in refused({"$or": [{"config.lr": i} for i in range(1001)]})


def test_a_filter_that_is_not_an_object_is_refused() -> None:
    assert "must be a JSON object" in refused([{"state": "finished"}])


@pytest.mark.parametrize("order", ["-bogus", "tags", "+config.", "-" + "x" * 2000])
def test_a_bad_order_is_refused_naming_it(order: str) -> None:
    with pytest.raises(InvalidInputError, match="order"):
        parse_order(order)


@pytest.mark.parametrize(
    "pattern",
    ["^val", "a.c", "[a-z]+_\\d{2,3}$", "(foo|bar)baz", "x*y?z+", "\\Afoo\\Z", "[^/]+/loss", "a{3}"],
)
def test_ordinary_patterns_are_accepted(pattern: str) -> None:
    assert parse_filters({"name": {"$regex": pattern}}) == Regex(Field(FieldKind.COLUMN, ("name",)), pattern)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(a+)+$", "a repetition inside a repetition"),
        ("(a*)*b", "a repetition inside a repetition"),
        ("(a|aa)*c", "a repeated alternation"),
        ("(\\w+\\s?)+$", "a repetition inside a repetition"),
        ("(a)\\1", "back-references"),
        ("a(?=b)", "look-ahead"),
        ("(?<!a)b", "look-ahead and look-behind"),
        ("\\bword", "word boundaries"),
        ("(?i)abc", "inline flags"),
        ("a{1000}", "over 255"),
        ("a*b*c*d*e*f*", "unbounded quantifiers"),
        ("(", "not a valid pattern"),
        ("x" * 300, "the limit is 256"),
    ],
)
def test_regex_bombs_and_constructs_databases_read_differently_are_refused(
    pattern: str, message: str
) -> None:
    assert message in refused({"name": {"$regex": pattern}})


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=5),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=6), c),
        max_leaves=20,
    )
)
def test_any_json_either_parses_or_is_refused_with_invalid_input(doc: Any) -> None:
    for filters in (doc, {"config.a": doc}, {"$or": [doc]}, {"tags": {"$in": doc}}):
        outcome: object
        try:
            outcome = parse_filters(filters)
        except InvalidInputError as exc:
            outcome = exc
        # A tree, or a refusal that says where (as every refusal does); never another exception.
        assert isinstance(outcome, And | Or | Not | Cmp | In | Exists | Regex) or str(outcome).startswith(
            "filters"
        )
