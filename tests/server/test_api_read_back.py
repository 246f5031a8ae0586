"""Reading runs back as wandb users do, and editing many at once, through ``tracklog.Api`` over real
gRPC to a real store server: history as a pandas DataFrame, scan_history, run paths in every form,
tag_runs and move_runs."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracklog import Api
from tracklog._errors import NotFoundError, UsageError
from tracklog.v1 import store_pb2_grpc
from tracklog_server import RunKey

from .helpers import history_record, system_record
from .test_api_manage import Training, path

T0 = 1_700_000_000.0


def test_history_is_a_dataframe_with_ints_floats_missing_values_and_json(
    api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    training = Training(stub, key, start_time=T0)
    training.send(
        history_record(
            [(0, {"loss": 1.0, "epoch": 0}), (1, {"loss": 0.5, "epoch": 0, "note": "a"})], time0=T0
        ),
        history_record([(2, {"loss": math.nan, "epoch": 1}), (3, {"acc": 0.9, "epoch": 1})], time0=T0),
    )
    frame = api.run(path(key)).history()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["_step", "_runtime", "_timestamp", "acc", "epoch", "loss", "note"]
    assert frame["_step"].tolist() == [0, 1, 2, 3]
    assert frame["_runtime"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert frame["epoch"].dtype.kind == "i"  # an int in every row stays an int
    assert frame["epoch"].tolist() == [0, 0, 1, 1]
    loss = frame["loss"].tolist()
    assert loss[:2] == [1.0, 0.5]
    assert math.isnan(loss[2])  # a logged NaN
    assert math.isnan(loss[3])  # not logged at step 3
    assert frame["note"].isna().tolist() == [True, False, True, True]  # missing: pandas's NA
    assert frame["note"].iloc[1] == "a"
    assert frame["acc"].notna().tolist() == [False, False, False, True]


def test_history_samples_keys_and_x_axis(api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey) -> None:
    training = Training(stub, key, start_time=T0)
    rows = [
        (s, {"loss": 1 / (s + 1)} if s % 10 else {"loss": 1 / (s + 1), "epoch": s // 10}) for s in range(100)
    ]
    training.send(history_record(rows, time0=T0))
    run = api.run(path(key))
    sampled = run.history(samples=10, keys=["loss"])
    assert len(sampled) == 10
    assert sampled["_step"].iloc[0] == 0
    assert sampled["_step"].iloc[-1] == 99
    assert list(sampled.columns) == ["_step", "_runtime", "_timestamp", "loss"]
    by_epoch = run.history(samples=None, keys=["loss"], x_axis="epoch")
    assert by_epoch["_step"].tolist() == list(range(0, 100, 10))  # only rows that have the x axis
    assert by_epoch["epoch"].tolist() == list(range(10))
    as_rows = run.history(samples=None, keys=["loss"], x_axis="epoch", pandas=False)
    assert [r["epoch"] for r in as_rows] == list(range(10))
    assert run.history(samples=3, pandas=False)[0] == {
        "_step": 0,
        "_timestamp": T0,
        "_runtime": 0.0,
        "loss": 1.0,
        "epoch": 0,
    }


def test_history_of_the_system_stream(api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey) -> None:
    training = Training(stub, key, start_time=T0)
    training.send(system_record([T0 + 2, T0 + 4], {"system/cpu": [10.0, math.nan], "system/mem": [1.0, 2.0]}))
    run = api.run(path(key))
    frame = run.history(stream="system")
    assert list(frame.columns) == ["_runtime", "_timestamp", "system/cpu", "system/mem"]
    assert frame["_runtime"].tolist() == [2.0, 4.0]
    assert frame["system/mem"].tolist() == [1.0, 2.0]
    assert math.isnan(frame["system/cpu"].iloc[1])
    assert run.history(stream="system", pandas=False) == [
        {"_timestamp": T0 + 2, "_runtime": 2.0, "system/cpu": 10.0, "system/mem": 1.0},
        {"_timestamp": T0 + 4, "_runtime": 4.0, "system/mem": 2.0},
    ]


def test_history_arguments_are_checked_at_the_call(
    api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    Training(stub, key)
    run = api.run(path(key))
    with pytest.raises(ValueError, match="stream must be one of 'default', 'system'"):
        run.history(stream="gpu")
    with pytest.raises(ValueError, match="samples must be a positive int or None"):
        run.history(samples=0)
    with pytest.raises(TypeError, match="keys must be a list of str"):
        run.history(keys="loss")
    with pytest.raises(ValueError, match="page_size must be a positive int"):
        run.scan_history(page_size=0)


def test_scan_history_returns_rows_with_every_key_in_the_step_range(
    api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    training = Training(stub, key, start_time=T0)
    rows = [(s, {"loss": float(s), **({"acc": s / 100} if s % 3 == 0 else {})}) for s in range(50)]
    training.send(history_record(rows[:20], time0=T0), history_record(rows[20:], time0=T0))
    run = api.run(path(key))
    scanned = list(run.scan_history(keys=["loss", "acc"], page_size=7))
    assert [r["_step"] for r in scanned] == list(range(0, 50, 3))
    assert all(set(r) == {"_step", "_timestamp", "_runtime", "loss", "acc"} for r in scanned)
    window = [r["_step"] for r in run.scan_history(min_step=10, max_step=25, page_size=4)]
    assert window == list(range(10, 25))
    assert list(run.scan_history(min_step=10, max_step=10)) == []
    assert len(list(run.scan_history())) == 50


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(["a", "b", "c"]),
            st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.text(max_size=3)),
            max_size=3,
        ),
        min_size=1,
        max_size=30,
    ),
    split=st.integers(0, 30),
)
def test_the_dataframe_holds_what_the_row_dicts_hold(
    api: Api, stub: store_pb2_grpc.StoreStub, rows: list[dict[str, object]], split: int
) -> None:
    key = RunKey("e", "p", f"h{abs(hash(json.dumps(rows, default=str))) % 10**12}-{split}")
    training = Training(stub, key, start_time=T0)
    numbered = list(enumerate(rows))
    for part in (numbered[:split], numbered[split:]):
        if part:
            training.send(history_record(part, time0=T0))
    run = api.run(path(key))
    frame = run.history(samples=None)
    dicts = run.history(samples=None, pandas=False)
    assert len(frame) == len(dicts) == len(rows)
    for i, row in enumerate(dicts):
        for column in frame.columns:
            cell = frame[column].iloc[i]
            if column in row:
                value = row[column]
                if isinstance(value, float) and math.isnan(value):
                    assert pd.isna(cell)
                else:
                    assert cell == value, (column, i, cell, value)
            else:
                assert pd.isna(cell), (column, i, cell)


def test_a_run_is_found_by_every_path_form(
    api: Api, stub: store_pb2_grpc.StoreStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKLOG_ENTITY", "alice")
    key = RunKey("alice", "mnist", "abc123")
    Training(stub, key)
    for form in (
        "alice/mnist/abc123",
        "alice/mnist/runs/abc123",
        "/alice/mnist/runs/abc123/",
        "mnist/abc123",
        "http://127.0.0.1:8080/alice/mnist/runs/abc123?token=x#overview",
        "https://tracklog.example.com/alice/mnist/runs/abc123/logs",
    ):
        assert api.run(form).path == "alice/mnist/abc123", form
    for bad, message in (
        ("abc123", "must look like 'entity/project/id', 'entity/project/runs/id', 'project/id'"),
        ("a/b/c/d/e", "must look like"),
        ("alice/mn ist/abc", "invalid run project 'mn ist'"),
    ):
        with pytest.raises(UsageError, match=message):
            api.run(bad)
    with pytest.raises(NotFoundError, match="alice/mnist/nope"):
        api.run("mnist/nope")


def test_tag_runs_and_move_runs_edit_many_runs_in_one_call(api: Api, stub: store_pb2_grpc.StoreStub) -> None:
    keys = [RunKey("e", "sweep", f"r{i}") for i in range(3)]
    trainings = [Training(stub, k, tags=["old", "keep"]) for k in keys]
    runs = [api.run(path(k)) for k in keys]
    assert api.tag_runs([runs[0], path(keys[1]), "e/sweep/runs/r2"], add=["best"], remove=["old"]) == 3
    assert api.move_runs(runs, group="sweep-7", job_type="eval") == 3
    for k in keys:
        run = api.run(path(k))
        assert (run.tags, run.group, run.job_type) == (["keep", "best"], "sweep-7", "eval")
    # The API's tag survives the training process's next change of its own tags.
    trainings[0].send(_update_tags(["keep", "mine"]))
    assert api.run(path(keys[0])).tags == ["keep", "best", "mine"]
    assert api.tag_runs(path(keys[1]), remove=["best"]) == 1  # one run on its own


def test_bulk_edits_refuse_bad_input_and_unknown_runs_applying_nothing(
    api: Api, stub: store_pb2_grpc.StoreStub
) -> None:
    live = RunKey("e", "p", "live")
    Training(stub, live)
    with pytest.raises(UsageError, match="needs tags to add or remove"):
        api.tag_runs([path(live)])
    with pytest.raises(UsageError, match="tag '' is empty"):
        api.tag_runs([path(live)], add=[""])
    with pytest.raises(UsageError, match="no runs given"):
        api.move_runs([], group="g")
    with pytest.raises(NotFoundError, match="e/p/missing"):
        api.tag_runs([path(live), "e/p/missing"], add=["x"])
    assert api.run(path(live)).tags == []


def _update_tags(tags: list[str]) -> bytes:
    from tracklog.v1 import records_pb2

    update = records_pb2.RunUpdate(tags=records_pb2.StringList(values=tags))
    return records_pb2.Record(update=update).SerializeToString()


def test_config_and_summary_are_editable_mappings_saved_by_update(
    api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    training = Training(stub, key, config={"opt": {"lr": 0.1, "name": "adam"}, "tmp": 1})
    training.send(history_record([(0, {"loss": 0.5, "acc": 0.8})]))
    run = api.run(path(key))
    run.config["opt"]["lr"] = 0.2  # a nested change is the top-level key's change
    del run.config["tmp"]
    run.config.update({"epochs": 10}, batch=32)
    run.update()
    run.summary["best"] = 0.97
    del run.summary["acc"]
    run.summary.update()  # as in wandb: saves the run
    again = api.run(path(key))
    assert again.config == {"opt": {"lr": 0.2, "name": "adam"}, "epochs": 10, "batch": 32}
    assert again.summary == {"loss": 0.5, "best": 0.97}
    assert json.loads(json.dumps(again.summary)) == again.summary  # still a plain dict to json
