"""Run.log(): step rules, accepted values, and errors that name the key and type (offline runs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import tracklog
from tracklog.testing import history_rows, read_records


def _offline(**kwargs: object) -> tracklog.Run:
    return tracklog.init(project="p", mode="offline", **kwargs)  # type: ignore[arg-type]


def test_each_log_call_writes_a_row_at_the_next_step() -> None:
    run = _offline()
    for i in range(10):
        run.log({"acc": i / 10, "loss": 1.0 - i / 10})
    run.finish()
    rows = history_rows(read_records(run.dir))
    assert [r["_step"] for r in rows] == list(range(10))
    assert [r["acc"] for r in rows] == [i / 10 for i in range(10)]
    assert all(isinstance(r["_timestamp"], float) for r in rows)


def test_commit_false_accumulates_into_the_current_row() -> None:
    run = _offline()
    run.log({"a": 1}, commit=False)
    run.log({"b": 2.5}, commit=False)
    run.log({"c": "x"})
    run.log({"a": 2})
    run.finish()
    rows = history_rows(read_records(run.dir))
    assert rows == [
        {"_step": 0, "_timestamp": rows[0]["_timestamp"], "a": 1, "b": 2.5, "c": "x"},
        {"_step": 1, "_timestamp": rows[1]["_timestamp"], "a": 2},
    ]


def test_an_explicit_step_moves_forward_and_a_backwards_step_is_dropped_with_one_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _offline()
    run.log({"x": 1})
    run.log({"x": 2}, step=10)
    run.log({"y": 3}, step=10)
    run.log({"x": 4}, step=3)
    run.log({"x": 5}, step=11)
    run.finish()
    rows = history_rows(read_records(run.dir))
    assert [(r["_step"], r.get("x"), r.get("y")) for r in rows] == [(0, 1, None), (10, 2, 3), (11, 5, None)]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert "step 3" in warnings[0]
    assert "current step 11" not in warnings[0]


def test_nan_and_infinities_are_kept() -> None:
    run = _offline()
    run.log({"v": math.nan})
    run.log({"v": math.inf})
    run.log({"v": -math.inf})
    run.finish()
    values = [r["v"] for r in history_rows(read_records(run.dir))]
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf]


def test_numpy_scalars_and_nested_dicts_are_accepted() -> None:
    run = _offline()
    run.log({"train": {"loss": np.float32(0.5), "n": np.int64(3)}, "arr": np.array(2.0), "ok": True})
    run.finish()
    (row,) = history_rows(read_records(run.dir))
    assert row["train/loss"] == 0.5
    assert row["train/n"] == 3
    assert isinstance(row["train/n"], int)
    assert row["arr"] == 2.0
    assert row["ok"] is True


def test_strings_none_and_lists_round_trip() -> None:
    run = _offline()
    run.log({"s": "hello", "none": None, "l": [1, 2.5, "a"]})
    run.finish()
    (row,) = history_rows(read_records(run.dir))
    assert (row["s"], row["none"], row["l"]) == ("hello", None, [1, 2.5, "a"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([("a", 1)], "mapping such as a dict, got list"),
        ({1: 2.0}, "key 1 of type int"),
        ({"model": object()}, "key 'model' has unsupported type object"),
        ({"outer": {"inner": {1, 2}}}, "key 'outer/inner' has unsupported type set"),
        ({"arr": np.zeros(3)}, "key 'arr' has unsupported type numpy.ndarray"),
    ],
)
def test_bad_input_raises_type_error_naming_the_key_and_type(data: object, message: str) -> None:
    run = _offline()
    run.log({"before": 1.0})
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run.log(data)  # type: ignore[arg-type]
    run.log({"after": 2.0})
    run.finish()
    rows = history_rows(read_records(run.dir))
    assert [sorted(k for k in r if not k.startswith("_")) for r in rows] == [["before"], ["after"]]


def test_a_caller_mutating_its_dict_after_log_does_not_change_the_row() -> None:
    run = _offline()
    row = {"x": 1.0}
    run.log(row)
    row["x"] = 99.0
    run.finish()
    assert history_rows(read_records(run.dir))[0]["x"] == 1.0


def test_many_rows_are_batched_into_few_frames(tmp_path: Path) -> None:
    run = _offline()
    for i in range(20_000):
        run.log({f"k{j}": float(i + j) for j in range(10)})
    run.finish()
    records = read_records(run.dir)
    history = [r for _, r in records if r.WhichOneof("kind") == "history"]
    assert len(history) < 30
    rows = history_rows(records)
    assert len(rows) == 20_000
    assert rows[-1]["k9"] == 20_008.0


def test_disabled_mode_records_nothing_and_accepts_anything(tmp_path: Path) -> None:
    run = tracklog.init(project="p", mode="disabled")
    run.log({"x": 1})
    run.log("not even a mapping")  # type: ignore[arg-type]
    run.finish()
    assert not (tmp_path / "tracklog").exists()


def test_a_resumed_run_continues_its_steps_sequence_and_config() -> None:
    first = _offline(id="res1", config={"lr": 0.1})
    first.log({"x": 1.0})
    first.log({"x": 2.0})
    first.finish()
    second = _offline(id="res1", resume="allow", config={"epochs": 3})
    assert second.dir == first.dir
    assert second.step == 2
    assert dict(second.config.items()) == {"lr": 0.1, "epochs": 3}
    second.log({"x": 3.0})
    second.finish()
    records = read_records(second.dir)
    assert [seq for seq, _ in records] == list(range(1, len(records) + 1))
    assert [(r["_step"], r["x"]) for r in history_rows(records)] == [(0, 1.0), (1, 2.0), (2, 3.0)]


def test_reusing_a_local_run_id_without_resume_is_refused_with_a_clear_error() -> None:
    _offline(id="taken").finish()
    with pytest.raises(tracklog.UsageError, match=r"already exists.*resume='allow'"):
        _offline(id="taken")
    with pytest.raises(tracklog.UsageError, match="resume='must' but no run directory"):
        _offline(id="fresh", resume="must")
