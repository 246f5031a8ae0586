"""Ingest into the SQL store on SQLite and PostgreSQL: idempotence, a refused record costing only
itself, run attributes."""

from __future__ import annotations

import json
import math
import re

import pytest

from tracklog.v1 import records_pb2
from tracklog_server import InvalidInputError, RunKey, RunNotFoundError, RunState, SqlAlchemyStore
from tracklog_server.testing import FakeClock

from .helpers import (
    RunWriter,
    config_record,
    finish_record,
    history_record,
    read_rows,
    refusal,
    start_record,
    summary_record,
    update_record,
)


def rows(start: int, stop: int) -> list[tuple[int, dict[str, float]]]:
    return [(s, {"loss": 1.0 / (s + 1), "acc": s / 100}) for s in range(start, stop)]


def test_a_new_run_starts_running_with_its_attributes(
    store: SqlAlchemyStore, key: RunKey, clock: FakeClock
) -> None:
    w = RunWriter(key)
    start = start_record(
        key, name="bold-fox-1", notes="first", tags=["a", "b"], group="g", job_type="train",
        config={"lr": 0.01, "layers": [1, 2]}, start_time=1234.5, host="box", run_dir="/runs/x", pid=42,
    )  # fmt: skip
    result = store.ingest(key, w.frames(start))
    assert (result.accepted, result.applied_through) == (True, 1)
    run = store.get_run(key)
    assert run.state is RunState.RUNNING
    assert (run.name, run.notes, run.tags, run.group, run.job_type) == (
        "bold-fox-1",
        "first",
        ("a", "b"),
        "g",
        "train",
    )
    assert json.loads(run.config_json) == {"lr": 0.01, "layers": [1, 2]}
    assert (run.created_at, run.heartbeat_at, run.finished_at) == (1234.5, clock(), 0.0)
    assert (run.host, run.run_dir, run.last_seq, run.history_rows, run.last_step) == (
        "box",
        "/runs/x",
        1,
        0,
        -1,
    )
    assert json.loads(run.metadata_json)["pid"] == 42


def test_a_resent_batch_is_applied_once(store: SqlAlchemyStore, key: RunKey) -> None:
    frames = RunWriter(key).frames(
        start_record(key), history_record(rows(0, 10)), history_record(rows(10, 20))
    )
    assert store.ingest(key, frames).applied_through == 3
    again = store.ingest(key, frames)
    assert (again.accepted, again.applied_through) == (True, 3)
    overlapping = store.ingest(key, frames[1:])  # a resend after a lost ack, partly old
    assert (overlapping.accepted, overlapping.applied_through) == (True, 3)
    assert store.get_run(key).history_rows == 20
    assert [r["_step"] for r in read_rows(store, key)] == list(range(20))


def test_a_resend_that_overlaps_and_extends_applies_only_the_new_frames(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    first = w.frames(start_record(key), history_record(rows(0, 5)))
    second = w.frames(history_record(rows(5, 8)))
    store.ingest(key, first)
    result = store.ingest(key, first + second)
    assert (result.accepted, result.applied_through) == (True, 3)
    assert store.get_run(key).history_rows == 8


def test_a_garbage_frame_costs_only_itself_and_is_noted_on_the_run(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key)))
    frames = w.frames(history_record(rows(0, 5)), b"\xff\xff\xff garbage", config_record({"a": 1}))
    assert "not a valid tracklog.v1.Record" in refusal(store.ingest(key, frames), 3)
    run = store.get_run(key)
    assert (run.last_seq, run.history_rows, json.loads(run.config_json)) == (4, 5, {"a": 1})
    assert run.problems == ("record 3 refused: record is not a valid tracklog.v1.Record",)
    assert run.rows_lost == 0
    assert len(read_rows(store, key)) == 5


def test_a_refused_history_record_counts_its_rows_as_lost(store: SqlAlchemyStore, key: RunKey) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key), history_record(rows(0, 3))))
    bad = history_record([(s, {"x": 1.0, "": 2.0}) for s in range(3, 10)])  # what an old SDK sent
    good = history_record(rows(10, 12))
    assert "history key '' is empty" in refusal(store.ingest(key, w.frames(bad, good)), 3)
    run = store.get_run(key)
    assert (run.history_rows, run.rows_lost, run.last_seq) == (5, 7, 4)
    assert run.problems == ("record 3 refused (7 history rows): history key '' is empty",)
    assert [r["_step"] for r in read_rows(store, key)] == [0, 1, 2, 10, 11]


def test_a_refused_run_start_still_creates_the_run_with_its_other_records(
    store: SqlAlchemyStore, key: RunKey, clock: FakeClock
) -> None:
    frames = RunWriter(key).frames(
        start_record(key, name="a\x00b"), history_record(rows(0, 5)), b"\x0a\x05abc"
    )
    result = store.ingest(key, frames)
    assert (result.accepted, result.applied_through) == (True, 3)
    assert [(r.seq, r.reason[:30]) for r in result.refused] == [
        (1, "name 'a\\x00b' contains a NUL c"),
        (3, "record is not a valid tracklog"),
    ]
    run = store.get_run(key)
    assert (run.name, run.state, run.history_rows, run.created_at) == (key.id, RunState.RUNNING, 5, clock())
    assert len(run.problems) == 2


def test_a_gap_is_not_accepted_and_nothing_is_applied(store: SqlAlchemyStore, key: RunKey) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key), history_record(rows(0, 5))))
    w.seq += 1  # frame 3 is lost
    result = store.ingest(key, w.frames(history_record(rows(6, 9)), config_record({"late": True})))
    assert (result.accepted, result.applied_through) == (False, 2)
    run = store.get_run(key)
    assert (run.last_seq, run.history_rows, json.loads(run.config_json)) == (2, 5, {})


def test_an_unknown_run_must_start_with_a_run_start_at_seq_1(store: SqlAlchemyStore, key: RunKey) -> None:
    late = store.ingest(key, [(2, history_record(rows(0, 3)))])
    assert (late.accepted, late.applied_through) == (False, 0)
    no_start = store.ingest(key, [(1, history_record(rows(0, 3)))])
    assert (no_start.accepted, no_start.applied_through) == (False, 0)
    with pytest.raises(RunNotFoundError):
        store.get_run(key)


def test_frames_of_a_request_must_be_consecutive(store: SqlAlchemyStore, key: RunKey) -> None:
    with pytest.raises(InvalidInputError, match="consecutive"):
        store.ingest(key, [(1, start_record(key)), (3, config_record({}))])


def test_a_run_start_for_another_run_is_refused(store: SqlAlchemyStore, key: RunKey) -> None:
    other = RunKey(key.entity, key.project, "other")
    store.ingest(key, [(1, start_record(key, name="mine"))])
    assert "RunStart is for run" in refusal(store.ingest(key, [(2, start_record(other, name="theirs"))]), 2)
    assert store.get_run(key).name == "mine"
    with pytest.raises(RunNotFoundError):
        store.get_run(other)


@pytest.mark.parametrize(
    "payload",
    [
        records_pb2.Record().SerializeToString(),
        records_pb2.Record(history=b"\x01\x02").SerializeToString(),
        records_pb2.Record(config=records_pb2.ConfigUpdate(items_json="[1, 2]")).SerializeToString(),
        records_pb2.Record(config=records_pb2.ConfigUpdate(items_json="{nope")).SerializeToString(),
        records_pb2.Record(
            history=records_pb2.HistoryBatch(steps=b"\x00" * 8, timestamps=b"\x00" * 4).SerializeToString()
        ).SerializeToString(),
        records_pb2.Record(
            finish=records_pb2.Finish(state=records_pb2.RUN_STATE_RUNNING)
        ).SerializeToString(),
        records_pb2.Record(update=records_pb2.RunUpdate(name="x" * 5000)).SerializeToString(),
    ],
    ids=[
        "empty",
        "bad-history",
        "config-not-object",
        "config-not-json",
        "short-timestamps",
        "finish-running",
        "long-name",
    ],
)
def test_malformed_records_are_refused_with_a_reason(
    store: SqlAlchemyStore, key: RunKey, payload: bytes
) -> None:
    store.ingest(key, [(1, start_record(key))])
    result = store.ingest(key, [(2, payload), (3, config_record({"after": 1}))])
    reason = refusal(result, 2)
    run = store.get_run(key)
    assert (run.last_seq, json.loads(run.config_json)) == (3, {"after": 1})
    (problem,) = run.problems
    assert problem.startswith("record 2 refused")
    assert problem.endswith(reason)


def test_history_columns_are_validated(store: SqlAlchemyStore, key: RunKey) -> None:
    store.ingest(key, [(1, start_record(key))])
    steps = b"".join(s.to_bytes(8, "little") for s in (0, 1, 2))
    times = b"\x00" * 24

    def batch(*columns: records_pb2.Column, row_steps: bytes = steps) -> bytes:
        b = records_pb2.HistoryBatch(steps=row_steps, timestamps=times[: len(row_steps)], columns=columns)
        return records_pb2.Record(history=b.SerializeToString()).SerializeToString()

    float_col = records_pb2.COLUMN_TYPE_FLOAT
    cases = {
        "reserved": batch(
            records_pb2.Column(key="_timestamp", type=float_col, steps=steps, values=b"\x00" * 24)
        ),
        "one float64 value per step": batch(
            records_pb2.Column(key="x", type=float_col, steps=steps, values=b"")
        ),
        "not rows of the batch": batch(
            records_pb2.Column(key="x", type=float_col, steps=(7).to_bytes(8, "little"), values=b"\x00" * 8)
        ),
        "not JSON": batch(
            records_pb2.Column(
                key="x", type=records_pb2.COLUMN_TYPE_JSON, steps=steps, json_values=["1", "{", "2"]
            )
        ),
        "has steps of its own": batch(
            records_pb2.Column(key="x", type=float_col, steps=steps, values=b"\x00" * 24, all_rows=True)
        ),
        "needs one float64 value per step": batch(
            records_pb2.Column(key="x", type=float_col, values=b"\x00" * 16, all_rows=True)
        ),
        "strictly ascending": batch(row_steps=steps[8:16] + steps[:8] + steps[16:]),
        "same step": batch(
            records_pb2.Column(key="x", type=float_col, steps=steps, values=b"\x00" * 24),
            records_pb2.Column(
                key="x", type=records_pb2.COLUMN_TYPE_JSON, steps=steps[:8], json_values=["1"]
            ),
        ),
    }
    for seq, (reason, record) in enumerate(cases.items(), start=2):
        assert re.search(reason, refusal(store.ingest(key, [(seq, record)]), seq))
    run = store.get_run(key)
    assert (run.history_rows, run.rows_lost, len(run.problems)) == (0, 3 * len(cases), len(cases))


def test_config_updates_merge_top_level_keys(store: SqlAlchemyStore, key: RunKey) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key, config={"lr": 0.1, "opt": {"name": "sgd", "m": 0.9}})))
    store.ingest(key, w.frames(config_record({"opt": {"name": "adam"}, "epochs": 3})))
    assert json.loads(store.get_run(key).config_json) == {"lr": 0.1, "opt": {"name": "adam"}, "epochs": 3}


def test_updates_change_only_the_fields_they_set(store: SqlAlchemyStore, key: RunKey) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key, name="a", notes="n", tags=["x"], group="g", job_type="j")))
    store.ingest(
        key, w.frames(update_record(name="b"), update_record(tags=["y", "z"]), update_record(notes=""))
    )
    run = store.get_run(key)
    assert (run.name, run.notes, run.tags, run.group, run.job_type) == ("b", "", ("y", "z"), "g", "j")


def test_finish_sets_state_exit_code_and_time(store: SqlAlchemyStore, key: RunKey, clock: FakeClock) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key)))
    store.ingest(key, w.frames(finish_record(records_pb2.RUN_STATE_FAILED, exit_code=3, end_time=99.5)))
    run = store.get_run(key)
    assert (run.state, run.exit_code, run.finished_at) == (RunState.FAILED, 3, 99.5)
    other = RunKey(key.entity, key.project, key.id + "b")
    store.ingest(
        other, RunWriter(other).frames(start_record(other), finish_record(records_pb2.RUN_STATE_UNSPECIFIED))
    )
    assert (store.get_run(other).state, store.get_run(other).finished_at) == (RunState.FINISHED, clock())


def test_a_resumed_run_runs_again_and_keeps_its_history(store: SqlAlchemyStore, key: RunKey) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key, name="a"), history_record(rows(0, 5)), finish_record()))
    store.ingest(
        key, w.frames(start_record(key, resume="allow", config={"more": 1}), history_record(rows(3, 8)))
    )
    run = store.get_run(key)
    assert (run.state, run.finished_at, run.name) == (RunState.RUNNING, 0.0, "a")
    assert json.loads(run.config_json) == {"more": 1}
    # Steps 3 and 4 were stored before the resume: the re-sent ones are dropped.
    assert [r["_step"] for r in read_rows(store, key)] == list(range(8))
    assert run.history_rows == 8


def test_summary_holds_the_last_min_and_max_of_each_key_with_nan_and_inf(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    nan, inf = math.nan, math.inf
    store.ingest(key, w.frames(start_record(key)))
    store.ingest(key, w.frames(history_record([(0, {"a": nan, "b": 2.0}), (1, {"a": 5.0, "b": nan})])))
    store.ingest(
        key, w.frames(history_record([(2, {"a": -1.0, "b": inf}), (3, {"a": nan, "c": -inf, "n": 7})]))
    )
    run = store.get_run(key)
    metrics = {m.key: m for m in run.metrics}
    assert (metrics["a"].min, metrics["a"].max, metrics["a"].last_step) == (-1.0, 5.0, 3)
    assert math.isnan(metrics["a"].last)
    assert (metrics["b"].last, metrics["b"].min, metrics["b"].max) == (inf, 2.0, inf)
    assert (metrics["c"].last, metrics["c"].min, metrics["c"].max) == (-inf, -inf, -inf)
    summary = json.loads(run.summary_json)
    assert math.isnan(summary["a"])
    assert summary["b"] == inf
    assert summary["c"] == -inf
    assert summary["n"] == 7
    assert isinstance(summary["n"], int)


def test_a_key_whose_values_are_all_nan_has_nan_min_and_max(store: SqlAlchemyStore, key: RunKey) -> None:
    store.ingest(key, RunWriter(key).frames(start_record(key), history_record([(0, {"x": math.nan})])))
    (metric,) = store.get_run(key).metrics
    assert math.isnan(metric.last)
    assert math.isnan(metric.min)
    assert math.isnan(metric.max)


def test_summary_shows_json_values_and_explicit_values_override(store: SqlAlchemyStore, key: RunKey) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key)))
    store.ingest(
        key, w.frames(history_record([(0, {"label": "cat", "loss": 0.5}), (1, {"loss": 0.25, "v": [1]})]))
    )
    store.ingest(key, w.frames(summary_record({"loss": 0.1, "best": {"epoch": 3}})))
    summary = json.loads(store.get_run(key).summary_json)
    assert summary == {"label": "cat", "loss": 0.1, "v": [1], "best": {"epoch": 3}}
    assert [m.key for m in store.get_run(key).metrics] == ["loss"]  # only numeric keys have metrics


def test_a_removed_summary_key_stays_hidden_until_it_is_logged_again(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key), history_record([(0, {"x": 1.0, "y": 2.0})])))
    store.ingest(key, w.frames(summary_record({"z": 3}, removed=["x"])))
    assert json.loads(store.get_run(key).summary_json) == {"y": 2.0, "z": 3}
    store.ingest(key, w.frames(history_record([(1, {"x": 4.0})])))
    assert json.loads(store.get_run(key).summary_json) == {"x": 4.0, "y": 2.0, "z": 3}


def test_a_key_that_changes_type_keeps_its_last_value(store: SqlAlchemyStore, key: RunKey) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key)))
    store.ingest(key, w.frames(history_record([(0, {"x": 1.5}), (1, {"x": "text"}), (2, {"x": 2})])))
    run = store.get_run(key)
    assert json.loads(run.summary_json) == {"x": 2}
    (metric,) = run.metrics
    assert (metric.last, metric.min, metric.max, metric.last_step) == (2.0, 1.5, 2.0, 2)
    assert read_rows(store, key) == [
        {"_step": 0, "_timestamp": 1_700_000_000.0, "x": 1.5},
        {"_step": 1, "_timestamp": 1_700_000_001.0, "x": "text"},
        {"_step": 2, "_timestamp": 1_700_000_002.0, "x": 2},
    ]


def test_invalid_run_ids_are_refused(store: SqlAlchemyStore) -> None:
    bad = RunKey("alice", "mnist", "no/slash")
    with pytest.raises(InvalidInputError, match="invalid run id"):
        store.ingest(bad, [(1, start_record(bad))])


def test_many_frames_in_one_request_are_applied_in_order(store: SqlAlchemyStore, key: RunKey) -> None:
    w = RunWriter(key)
    records = [start_record(key)] + [history_record(rows(i * 10, i * 10 + 10)) for i in range(50)]
    records += [config_record({"done": True}), finish_record()]
    result = store.ingest(key, w.frames(*records))
    assert (result.accepted, result.applied_through) == (True, 53)
    run = store.get_run(key)
    assert (run.history_rows, run.last_step, run.state) == (500, 499, RunState.FINISHED)
