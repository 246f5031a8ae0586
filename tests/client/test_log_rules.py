"""log() refuses at the call what the store would refuse, and is safe from several threads (offline
runs: the rows are read back from the run's spool)."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import tracklog
from tracklog import _rules
from tracklog.testing import history_rows, read_records


def _offline(**kwargs: object) -> tracklog.Run:
    return tracklog.init(project="p", mode="offline", **kwargs)  # type: ignore[arg-type]


def _rows(run: tracklog.Run) -> list[dict[str, Any]]:
    return history_rows(read_records(run.dir))


def _nested(depth: int) -> dict[str, Any]:
    data: dict[str, Any] = {"leaf": 1.0}
    for _ in range(depth):
        data = {"d": data}
    return data


def _cyclic() -> dict[str, Any]:
    data: dict[str, Any] = {"x": 1.0}
    data["self"] = data
    return data


# Each input the issue names, logged into a run that already holds a row: refused at log(), naming
# the key, and the rows before and after it kept.
REFUSED_KEYS = {
    "empty key": ({"": 1.0}, "key '' is empty"),
    "2,000-character key": ({"k" * 2000: 1.0}, "key 'kkkk.*'... is 2000 characters; the limit is 256"),
    "_step": ({"_step": 1.0}, "key '_step' is reserved"),
    "_timestamp": ({"_timestamp": 1.0}, "key '_timestamp' is reserved"),
    "_runtime": ({"_runtime": 1.0}, "key '_runtime' is reserved"),
    "lone surrogate": ({"loss\ud800": 1.0}, "key 'loss\\\\ud800' contains a lone surrogate at position 4"),
    "NUL": ({"lo\x00ss": 1.0}, "key 'lo\\\\x00ss' contains a NUL character at position 2"),
    "nested NUL": ({"train": {"a\x00": 1.0}}, "key 'train/a\\\\x00' contains a NUL"),
    "int over uint64": ({"n": 2**64}, "value for key 'n' is an int of 65 bits"),
    "int in a list": ({"l": [1, -(2**70)]}, r"key 'l\[1\]' is an int of 71 bits"),
    "str value with a key of NUL in a batch of fine keys": ({"a": 1.0, "b\x00": "x"}, "key 'b"),
    "nested keys checked whole": ({"a": {"b" * 255: 1.0}}, "is 257 characters"),
    "a dict nested 5,000 deep": (_nested(5_000), "is nested too deep: a flattened key would be over 256"),
    "a dict that contains itself": (_cyclic(), "is nested too deep"),
}


@pytest.mark.parametrize("case", REFUSED_KEYS, ids=list(REFUSED_KEYS))
def test_what_the_store_would_refuse_raises_at_log_naming_the_key_and_records_nothing(case: str) -> None:
    data, message = REFUSED_KEYS[case]
    run = _offline()
    run.log({"before": 1.0, "a": 0.5})  # "a" is known: the fast path must still refuse the call
    with pytest.raises(ValueError, match=message):
        run.log(data)
    run.log({"after": 2.0})
    run.finish()
    rows = _rows(run)
    assert [(r["_step"], sorted(k for k in r if not k.startswith("_"))) for r in rows] == [
        (0, ["a", "before"]),
        (1, ["after"]),
    ]


def test_a_refused_call_leaves_the_row_being_accumulated_as_it_was() -> None:
    run = _offline()
    run.log({"a": 1.0}, commit=False)
    with pytest.raises(ValueError, match="key '' is empty"):
        run.log({"b": 2.0, "": 3.0}, commit=False)
    run.log({"c": 4.0})
    run.finish()
    (row,) = _rows(run)
    assert (row["_step"], row["a"], row["c"], "b" in row) == (0, 1.0, 4.0, False)


def test_a_key_refused_once_stays_refused_on_the_fast_path() -> None:
    run = _offline()
    for _ in range(3):
        with pytest.raises(ValueError, match="reserved"):
            run.log({"_runtime": 1.0})
    run.log({"ok": 1.0})
    run.finish()
    assert [r["_step"] for r in _rows(run)] == [0]


@pytest.mark.parametrize("step", [2**63 - 1, 2**63, 2**64, -1])
def test_a_step_outside_int64_is_refused_and_the_run_goes_on(step: int) -> None:
    run = _offline()
    with pytest.raises(ValueError, match=re.escape(str(step))):
        run.log({"x": 1.0}, step=step)
    run.log({"x": 2.0})
    run.finish()
    assert [(r["_step"], r["x"]) for r in _rows(run)] == [(0, 2.0)]


def test_the_last_step_is_stored_and_a_step_after_it_is_refused() -> None:
    run = _offline()
    run.log({"x": 1.0}, step=_rules.MAX_STEP - 1)
    run.log({"x": 2.0}, step=_rules.MAX_STEP)  # commits the row at MAX_STEP - 1
    run.log({"y": 3.0})  # joins the row at MAX_STEP and commits it; no step is left after it
    for data in ({"x": 4.0}, {"y": "s"}):  # a known key too: near the end every call is checked
        with pytest.raises(ValueError, match="no step left"):
            run.log(data)
    run.finish()
    rows = [(r["_step"], r["x"], r.get("y")) for r in _rows(run)]
    assert rows == [(2**63 - 3, 1.0, None), (2**63 - 2, 2.0, 3.0)]


def test_ints_that_int64_or_uint64_hold_are_kept_exactly() -> None:
    run = _offline()
    values = [-(2**63), 2**53 + 1, 2**63, 2**64 - 1]
    for v in values:
        run.log({"n": v})
    run.finish()
    stored = [r["n"] for r in _rows(run)]
    assert stored == values
    assert all(type(v) is int for v in stored)


@pytest.mark.parametrize(
    ("setter", "message"),
    [
        (lambda run: setattr(run, "name", "a\x00b"), "run name 'a\\\\x00b' contains a NUL"),
        (lambda run: setattr(run, "notes", "n\ud83d"), "run notes 'n\\\\ud83d' contains a lone surrogate"),
        (lambda run: setattr(run, "tags", ["ok", "t\x00"]), "tag 't\\\\x00' contains a NUL"),
        (lambda run: run.config.update({"lr\x00": 1}), "config key 'lr\\\\x00' contains a NUL"),
        (lambda run: run.config.update({"opt": {"m\ud800": 1}}), "config key 'm\\\\ud800' contains a lone"),
        (lambda run: run.config.update({"big": 2**70}), "config value for key 'big' is an int of 71 bits"),
        (lambda run: run.summary.update({"_step": 1}), "summary key '_step' is reserved"),
        (lambda run: run.summary.__setitem__("", 1), "summary key '' is empty"),
        (lambda run: run.summary.__delitem__("x\x00"), "summary key 'x\\\\x00' contains a NUL"),
        (lambda run: run.config.update(big="x" * 2**24), "the config would be 16777235 characters as JSON"),
        (
            lambda run: run.summary.update({f"s{i}": "x" * 60_000 for i in range(280)}),
            "the summary would be 16802691 characters",
        ),
    ],
    ids=[
        "name",
        "notes",
        "tags",
        "config-key",
        "nested-config-key",
        "config-int",
        "summary",
        "empty",
        "del",
        "config-size",
        "summary-size",
    ],
)
def test_names_tags_config_and_summary_follow_the_same_rule(setter: Any, message: str) -> None:
    run = _offline(name="first", config={"keep": 1})
    with pytest.raises(ValueError, match=message):
        setter(run)
    assert (run.name, run.tags, dict(run.config.items())) == ("first", (), {"keep": 1})
    run.finish()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "a\x00"},
        {"notes": "\ud800"},
        {"tags": ["\x00"]},
        {"group": "g\x00"},
        {"job_type": "j\udfff"},
        {"config": {"k\x00": 1}},
    ],
    ids=["name", "notes", "tags", "group", "job_type", "config"],
)
def test_init_refuses_names_the_store_cannot_keep(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"contains a (NUL|lone surrogate)"):
        _offline(**kwargs)


def test_string_values_with_nul_and_lone_surrogates_are_kept_exactly() -> None:
    run = _offline()
    run.log({"s": "a\x00b\ud800c", "l": ["\udfff", "x\x00"]})
    run.finish()
    (row,) = _rows(run)
    assert (row["s"], row["l"]) == ("a\x00b\ud800c", ["\udfff", "x\x00"])


THREADS = 8
ROWS_PER_THREAD = 5_000


@pytest.fixture
def _frequent_thread_switches() -> Iterator[None]:
    """Threads switch every microsecond instead of every 5 ms, so that a race shows in thousands of
    calls rather than once in millions."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("_frequent_thread_switches")
def test_rows_logged_from_several_threads_are_all_kept_at_distinct_ascending_steps() -> None:
    run = _offline()
    start = threading.Barrier(THREADS)

    def work(t: int) -> None:
        start.wait()
        for i in range(ROWS_PER_THREAD):
            run.log({"thread": t, "i": i, "x": float(i)})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    run.finish()
    rows = _rows(run)
    assert [r["_step"] for r in rows] == list(range(THREADS * ROWS_PER_THREAD))
    for t in range(THREADS):  # each thread's rows, in the order it logged them
        assert [r["i"] for r in rows if r["thread"] == t] == list(range(ROWS_PER_THREAD))


@pytest.mark.usefixtures("_frequent_thread_switches")
def test_commit_false_from_several_threads_keeps_every_value_once() -> None:
    run = _offline()
    per_thread = 2_000
    start = threading.Barrier(4)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            run.log({f"a{t}": i}, commit=False)
            run.log({f"b{t}": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    run.finish()
    rows = _rows(run)
    steps = [r["_step"] for r in rows]
    assert steps == sorted(set(steps))
    # Another thread's call may commit a thread's commit=False value first, but each thread commits
    # before its next commit=False of the same key: every value is kept exactly once, in order, and
    # a_t=i no later than b_t=i.
    for t in range(4):
        a_steps = {r[f"a{t}"]: r["_step"] for r in rows if f"a{t}" in r}
        b_steps = {r[f"b{t}"]: r["_step"] for r in rows if f"b{t}" in r}
        assert list(a_steps) == list(b_steps) == list(range(per_thread))
        assert all(a_steps[i] <= b_steps[i] for i in range(per_thread))


@pytest.mark.slow
def test_rows_of_long_strings_are_cut_into_frames_the_spool_and_the_store_take() -> None:
    """2,500 rows of 30,000 characters are 75 MB of history, over one frame's 64 MiB: before, the
    whole batch was lost, silently."""
    run = _offline()
    text = "x" * 30_000
    for i in range(2_500):
        run.log({"s": text, "i": i})
    run.finish()
    records = read_records(run.dir)
    assert all(len(r.SerializeToString()) <= 64 * 1024 * 1024 for _, r in records)
    assert [r["i"] for r in history_rows(records)] == list(range(2_500))


def test_a_row_whose_text_would_not_fit_a_frame_is_refused_naming_its_largest_value() -> None:
    run = _offline()
    row = {f"s{i}": "\U0001f600" * 60_000 for i in range(23)}  # 12 bytes a character as JSON: 16.56 MB
    run.log(row)
    row["big"] = "\U0001f600" * 65_000  # 17.34 MB
    with pytest.raises(ValueError, match=r"row is 1\d{7} bytes of JSON text \(the largest, key 'big'"):
        run.log(row)
    run.finish()
    assert [len(r) for r in _rows(run)] == [2 + 23]
