"""run.define_metric(): summaries that follow a definition, glob names, step metrics, and the
definitions stored with the run (offline runs, read back from the spool)."""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracklog
from tracklog.testing import history_rows, read_records


def _offline(**kwargs: Any) -> tracklog.Run:
    return tracklog.init(project="p", mode="offline", **kwargs)


def _stored_summary(run_dir: str) -> dict[str, Any]:
    """The summary the store ends with: explicit values over the last logged ones, removals applied."""
    records = read_records(run_dir)
    summary: dict[str, Any] = {}
    for row in history_rows(records):
        summary.update({k: v for k, v in row.items() if not k.startswith("_")})
    for _, record in records:
        if record.WhichOneof("kind") == "summary":
            summary.update(json.loads(record.summary.items_json or "{}"))
            for key in record.summary.removed:
                summary.pop(key, None)
    return summary


def _stored_definitions(run_dir: str) -> list[dict[str, Any]]:
    configs = [
        json.loads(r.config.items_json) for _, r in read_records(run_dir) if r.WhichOneof("kind") == "config"
    ]
    return [c["_tracklog"] for c in configs if "_tracklog" in c][-1]["metrics"]  # type: ignore[no-any-return]


def test_each_summary_kind_follows_its_definition_in_the_run_and_in_what_is_stored() -> None:
    run = _offline()
    for name, kind in [("lo", "min"), ("hi", "max"), ("avg", "mean"), ("fst", "first"), ("lst", "last")]:
        run.define_metric(name, summary=kind)
    run.define_metric("gone", summary="none")
    run.define_metric("acc", summary="best", goal="maximize")
    run.define_metric("loss", summary="min,max")
    values = [3.0, 1.0, 4.0, 1.5, 2.0]
    for v in values:
        run.log({"lo": v, "hi": v, "avg": v, "fst": v, "lst": v, "gone": v, "acc": v, "loss": v, "plain": v})
    expected = {
        "lo": 1.0, "hi": 4.0, "avg": statistics.fmean(values), "fst": 3.0, "lst": 2.0, "acc": 4.0,
        "loss": {"min": 1.0, "max": 4.0}, "plain": 2.0,
    }  # fmt: skip
    assert run.summary.as_dict() == expected
    run.finish()
    assert _stored_summary(run.dir) == expected


def test_a_glob_name_covers_every_matching_key_and_a_later_definition_wins() -> None:
    run = _offline()
    run.define_metric("val/*", summary="min")
    run.define_metric("val/acc", summary="max")
    run.log({"val/loss": 0.5, "val/acc": 0.7, "train/loss": 0.9})
    run.log({"val/loss": 0.8, "val/acc": 0.6, "train/loss": 0.3})
    run.finish()
    assert _stored_summary(run.dir) == {"val/loss": 0.5, "val/acc": 0.7, "train/loss": 0.3}


def test_a_globs_step_metric_and_a_names_summary_both_apply_to_a_key() -> None:
    run = _offline()
    run.define_metric("val/*", step_metric="epoch")
    run.define_metric("val/acc", summary="max")
    run.log({"train/loss": 1.0})
    run.log({"train/loss": 0.5})
    run.log({"val/acc": 0.7, "val/loss": 0.2}, step=0)
    run.log({"val/acc": 0.6, "val/loss": 0.1}, step=1)
    run.finish()
    rows = history_rows(read_records(run.dir))
    assert [(r["_step"], r.get("epoch")) for r in rows] == [(0, None), (1, None), (2, 0), (3, 1)]
    assert _stored_summary(run.dir)["val/acc"] == 0.7


def test_keys_logged_before_a_definition_count_from_then_on() -> None:
    run = _offline()
    run.log({"loss": 0.1})
    run.log({"loss": 0.5})  # the fast path has seen "loss" by now
    run.define_metric("loss", summary="max")
    run.log({"loss": 0.3})
    run.log({"loss": 0.2})
    run.finish()
    assert _stored_summary(run.dir)["loss"] == 0.3


def test_a_step_metric_keeps_a_frameworks_own_step_without_dropping_rows_that_go_back() -> None:
    run = _offline()
    run.define_metric("epoch")
    run.define_metric("val/*", step_metric="epoch")
    for i in range(3):
        run.log({"train/loss": 1.0 / (i + 1)})  # the run's own steps move on: 0, 1, 2
    run.log({"val/loss": 0.4}, step=0)  # the framework's epoch 0: below the run's step, kept
    run.log({"val/loss": 0.3}, step=1)
    run.log({"val/loss": 0.2, "epoch": 2}, step=2)  # the step metric in the row as well
    run.finish()
    rows = history_rows(read_records(run.dir))
    assert [(r["_step"], r.get("val/loss"), r.get("epoch")) for r in rows] == [
        (0, None, None), (1, None, None), (2, None, None), (3, 0.4, 0), (4, 0.3, 1), (5, 0.2, 2),
    ]  # fmt: skip


def test_step_sync_fills_in_the_step_metrics_last_value() -> None:
    run = _offline()
    run.define_metric("eval/*", step_metric="trainer/step")
    run.log({"trainer/step": 10, "train/loss": 0.5})
    run.log({"eval/acc": 0.9})
    run.define_metric("test/*", step_metric="trainer/step", step_sync=False)
    run.log({"test/acc": 0.8})
    run.finish()
    rows = history_rows(read_records(run.dir))
    assert rows[1]["trainer/step"] == 10
    assert rows[1]["eval/acc"] == 0.9
    assert "trainer/step" not in rows[2]


def test_definitions_are_stored_with_the_run_and_not_shown_in_its_config() -> None:
    run = _offline(config={"lr": 0.1})
    run.define_metric("val/*", step_metric="epoch", summary="min", goal="minimize", hidden=True)
    run.finish()
    assert run.config.as_dict() == {"lr": 0.1}
    assert _stored_definitions(run.dir) == [
        {
            "name": "val/*",
            "step_metric": "epoch",
            "step_sync": True,
            "hidden": True,
            "summary": ["min"],
            "goal": "minimize",
        }
    ]


def test_a_resumed_run_keeps_its_definitions_and_its_summaries_span_the_whole_run() -> None:
    first = _offline(id="dm1")
    first.define_metric("loss", summary="min")
    first.define_metric("acc", summary="mean")
    first.log({"loss": 0.1, "acc": 1.0})
    first.log({"loss": 0.5, "acc": 0.0})
    first.finish()
    second = _offline(id="dm1", resume="allow")
    assert "_tracklog" not in second.config
    second.log({"loss": 0.2, "acc": 0.5})
    second.log({"loss": 0.9, "acc": 0.5})
    second.finish()
    assert _stored_summary(second.dir)["loss"] == 0.1
    assert _stored_summary(second.dir)["acc"] == 0.5


def test_the_reserved_config_key_is_refused_naming_it() -> None:
    run = _offline()
    with pytest.raises(ValueError, match="config key '_tracklog' is reserved"):
        run.config.update({"_tracklog": 1})
    run.finish()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": ""}, TypeError, "name must be a non-empty str"),
        ({"name": "x", "summary": "median"}, ValueError, "each part must be one of min, max, mean"),
        ({"name": "x", "summary": "none,min"}, ValueError, "'none' cannot be combined"),
        ({"name": "x", "summary": "best"}, ValueError, "'best' needs goal="),
        ({"name": "x", "goal": "up"}, ValueError, "goal must be 'minimize' or 'maximize'"),
        ({"name": "x", "step_metric": "x"}, ValueError, "cannot be the metric itself"),
        ({"name": "x", "step_metric": 3}, TypeError, "step_metric must be a str, got int"),
        ({"name": "_step"}, ValueError, "reserved"),
    ],
)
def test_bad_definitions_raise_errors_naming_the_argument(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    run = _offline()
    with pytest.raises(error, match=message):
        run.define_metric(**kwargs)
    run.finish()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.just(math.nan), st.floats(min_value=-1e12, max_value=1e12), st.integers(-(10**9), 10**9)
        ),
        min_size=1,
        max_size=30,
    )
)
def test_min_max_and_mean_match_the_logged_numbers_skipping_nan(values: list[float | int]) -> None:
    run = _offline()
    run.define_metric("a", summary="min")
    run.define_metric("b", summary="max")
    run.define_metric("c", summary="mean")
    for v in values:
        run.log({"a": v, "b": v, "c": v})
    summary = run.summary.as_dict()
    run.finish()
    numbers = [v for v in values if not math.isnan(v)]
    if numbers:
        assert (summary["a"], summary["b"]) == (min(numbers), max(numbers))
        assert summary["c"] == pytest.approx(statistics.fmean(numbers), rel=1e-9, abs=1e-6)
    else:  # nothing to aggregate: the last value stands
        assert math.isnan(summary["a"])
