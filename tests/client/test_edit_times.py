"""Edits made in the training process carry when they were made, so that the store can let the later
write of each field win against the API's edits (offline runs: the records as the spool keeps them)."""

from __future__ import annotations

import time

import tracklog
from tracklog.testing import read_records


def test_renames_tag_changes_and_config_and_summary_items_carry_their_write_time() -> None:
    before = time.time()
    run = tracklog.init(project="p", mode="offline", tags=["a"])
    run.name = "renamed"
    run.tags = ("a", "b")
    run.notes = "why"
    run.config["lr"] = 0.1
    run.summary["best"] = 0.9
    del run.summary["best"]
    run.finish()
    after = time.time()
    kinds = ("update", "config", "summary")
    edits = [r for _, r in read_records(run.dir) if r.WhichOneof("kind") in kinds]
    assert [r.WhichOneof("kind") for r in edits] == [
        "update",
        "update",
        "update",
        "config",
        "summary",
        "summary",
    ]
    times = [getattr(r, r.WhichOneof("kind")).write_time for r in edits]
    assert all(before <= t <= after for t in times), times
    assert times == sorted(times)  # never earlier than the run's previous edit


def test_the_run_start_and_history_carry_no_write_time() -> None:
    run = tracklog.init(project="p", mode="offline", config={"lr": 0.1})
    run.log({"x": 1.0})
    run.finish()
    kinds = {r.WhichOneof("kind") for _, r in read_records(run.dir)}
    assert {"start", "history", "finish"} <= kinds
    assert not {"update", "config", "summary"} & kinds  # init()'s config travels in the RunStart
