"""tracklog.log, config, summary, save, define_metric and finish act on the current run, as wandb's
module-level calls do; with no run they raise an error naming init(); disabled runs do nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tracklog
from tracklog.testing import history_rows, read_records


@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda: tracklog.log({"x": 1}), "tracklog.log()"),
        (lambda: tracklog.config.update({"lr": 0.1}), "tracklog.config"),
        (lambda: tracklog.config.lr, "tracklog.config"),
        (lambda: tracklog.config.__setitem__("lr", 1), "tracklog.config"),
        (lambda: tracklog.summary.__setitem__("best", 1), "tracklog.summary"),
        (lambda: dict(tracklog.summary.items()), "tracklog.summary"),
        (lambda: tracklog.save("*.txt"), "tracklog.save()"),
        (lambda: tracklog.define_metric("loss", summary="min"), "tracklog.define_metric()"),
    ],
)
def test_module_level_calls_without_a_run_raise_a_usage_error_naming_init(
    call: Callable[[], Any], what: str
) -> None:
    with pytest.raises(
        tracklog.UsageError,
        match=rf"{what.replace('(', '[(]').replace(')', '[)]')} needs a run: call tracklog.init\(\) first",
    ):
        call()


def test_finish_without_a_run_does_nothing() -> None:
    tracklog.finish()
    assert tracklog.run is None


def test_module_level_calls_reach_the_current_run(tmp_path: Path) -> None:
    config = tracklog.config  # taken before init(), as a module attribute is
    run = tracklog.init(project="p", mode="offline", config={"lr": 0.1})
    assert config.lr == 0.1
    assert tracklog.config["lr"] == 0.1
    assert "lr" in tracklog.config
    tracklog.config.update({"epochs": 2, "lr": 0.2}, allow_val_change=True)
    tracklog.config.batch = 16
    tracklog.define_metric("loss", summary="min")
    tracklog.log({"loss": 0.5})
    tracklog.log({"loss": 0.25, "acc": 0.5})
    tracklog.summary["best"] = 0.9
    assert tracklog.summary["loss"] == 0.25
    assert tracklog.summary.get("best") == 0.9
    (tmp_path / "notes.txt").write_text("hello")
    tracklog.save(str(tmp_path / "notes.txt"), policy="now")
    tracklog.finish()
    assert tracklog.run is None
    assert run.config.as_dict() == {"lr": 0.2, "epochs": 2, "batch": 16}
    records = read_records(run.dir)
    assert [(r["_step"], r["loss"]) for r in history_rows(records)] == [(0, 0.5), (1, 0.25)]
    summaries = [json.loads(r.summary.items_json) for _, r in records if r.WhichOneof("kind") == "summary"]
    assert {"best": 0.9} in summaries
    assert {"loss": 0.25} in summaries
    assert "notes.txt" in {r.file.name for _, r in records if r.WhichOneof("kind") == "file"}


def test_a_disabled_run_is_the_current_run_and_every_call_does_nothing(tmp_path: Path) -> None:
    run = tracklog.init(project="p", mode="disabled", config={"lr": 0.1})
    assert tracklog.run is run
    tracklog.log({"x": 1})
    tracklog.log("not even a mapping")  # type: ignore[arg-type]
    tracklog.config.update({"epochs": 3})
    tracklog.summary["best"] = 1.0
    tracklog.define_metric("x", summary="max")
    tracklog.save("*.txt")
    run.log({"y": 2}, step=5)
    assert tracklog.config.epochs == 3
    tracklog.finish()
    assert tracklog.run is None
    assert not (tmp_path / "tracklog").exists()
