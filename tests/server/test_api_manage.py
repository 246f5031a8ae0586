"""Editing, stopping and deleting runs through ``tracklog.Api`` and the CLI, over real gRPC to a real
store server on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import grpc
import pytest

from tracklog import Api
from tracklog._cli import main as cli
from tracklog._errors import NotFoundError, UsageError
from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc
from tracklog_server import RunKey, StoreServer

from .helpers import RunWriter, finish_record, history_record, ref, start_record, update_record


class Training:
    """Sends a run's records as its training process would (through Ingest, numbered 1, 2, 3 ...)."""

    def __init__(self, stub: store_pb2_grpc.StoreStub, key: RunKey, **start: object) -> None:
        self.stub, self.key, self.writer = stub, key, RunWriter(key)
        self.send(start_record(key, **start))

    def send(self, *records: bytes) -> None:
        frames = [records_pb2.Frame(seq=s, record=r) for s, r in self.writer.frames(*records)]
        response = self.stub.Ingest(store_pb2.IngestRequest(ref=ref(self.key), frames=frames), timeout=10)
        assert response.accepted


def path(key: RunKey) -> str:
    return f"{key.entity}/{key.project}/{key.id}"


def test_the_seed_snippet_adds_a_tag(api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey) -> None:
    Training(stub, key, tags=["base"])
    run = api.run(path(key))
    run.tags.append("tag1")
    run.update()
    assert api.run(path(key)).tags == ["base", "tag1"]


def test_every_editable_field_round_trips(api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey) -> None:
    training = Training(stub, key, name="n0", config={"lr": 0.1, "drop": 1})
    training.send(history_record([(0, {"loss": 1.0, "acc": 0.5})]))
    run = api.run(path(key))
    run.name, run.notes, run.group, run.job_type = "renamed", "notes\nwith lines", "grp", "eval"
    run.config["lr"] = 0.2
    run.config["inf"] = math.inf
    del run.config["drop"]
    run.summary["best"] = 0.97
    del run.summary["acc"]
    assert run.update() is run
    again = api.run(path(key))
    assert (again.name, again.notes, again.group, again.job_type) == (
        "renamed",
        "notes\nwith lines",
        "grp",
        "eval",
    )
    assert again.config == {"lr": 0.2, "inf": math.inf}
    assert again.summary == {"loss": 1.0, "best": 0.97}
    assert run.summary == again.summary  # update() reloads the run


def test_an_update_sends_only_what_changed_so_the_runs_own_edits_are_kept(
    api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    training = Training(stub, key, tags=["a"], config={"lr": 0.1})
    run = api.run(path(key))
    # Meanwhile the training process renames itself, adds a tag and a config item.
    training.send(update_record(name="from-run", tags=["a", "live"]))
    run.tags.append("tag1")
    run.notes = "from-api"
    run.update()
    assert (run.name, run.notes, run.tags) == ("from-run", "from-api", ["a", "live", "tag1"])
    # The run's next tag change and its end keep the API's tag.
    training.send(update_record(tags=["live"]), finish_record())
    final = api.run(path(key))
    assert (final.tags, final.state) == (["live", "tag1"], "finished")


def test_hostile_edits_are_refused_with_the_reason(
    api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    Training(stub, key)
    run = api.run(path(key))
    cases: list[tuple[str, object, str]] = [
        ("tags", [""], "tag '' is empty"),
        ("tags", ["a\x00b"], "NUL"),
        ("tags", "abc", "must be a list of str"),
        ("name", "x\x00", "NUL"),
        ("name", 3, "must be a str"),
        ("notes", "n" * (4 * 1024 * 1024 + 1), "limit is 4194304"),
        ("group", "g" * 1025, "limit is 1024"),
    ]
    for field, value, message in cases:
        fresh = api.run(path(key))
        setattr(fresh, field, value)
        with pytest.raises(UsageError, match=message):
            fresh.update()
    fresh = api.run(path(key))
    fresh.config[""] = 1
    with pytest.raises(UsageError, match="non-empty str"):
        fresh.update()
    assert api.run(path(key)).name == run.name  # nothing was applied


def test_stop_is_answered_to_the_daemons_heartbeat_and_refused_once_the_run_ended(
    api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    training = Training(stub, key)
    run = api.run(path(key))
    run.stop()
    beat = stub.Heartbeat(store_pb2.HeartbeatRequest(runs=[ref(key)]), timeout=10)
    assert [(r.entity, r.project, r.id) for r in beat.stop] == [(key.entity, key.project, key.id)]
    training.send(finish_record(records_pb2.RUN_STATE_KILLED, exit_code=255))
    assert api.run(path(key)).state == "killed"
    with pytest.raises(UsageError, match=f"run {path(key)} is killed, not running"):
        run.stop()


def test_a_deleted_run_says_so_and_its_id_stays_reserved(
    api: Api, stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    Training(stub, key)
    api.run(path(key)).delete()
    with pytest.raises(NotFoundError, match=f"run {path(key)} was deleted"):
        api.run(path(key))
    assert list(api.runs(f"{key.entity}/{key.project}")) == []
    with pytest.raises(grpc.RpcError) as caught:
        Training(stub, key)  # a new run with the id
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "was deleted; its id stays reserved" in str(caught.value.details())


def test_the_cli_edits_stops_and_deletes_runs(
    server: StoreServer, api: Api, stub: store_pb2_grpc.StoreStub, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = [RunKey("e", "p", f"r{i}") for i in range(3)]
    training = [Training(stub, k, tags=["base"]) for k in keys]
    at = ["--server", server.grpc_address]
    assert cli(["tag", path(keys[0]), "x", "y", *at]) == 0
    assert cli(["untag", path(keys[0]), "base", *at]) == 0
    assert cli(["rename", path(keys[0]), "best-run", *at]) == 0
    assert cli(["note", path(keys[0]), "looks good", *at]) == 0
    assert cli(["group", path(keys[0]), "sweep-1", *at]) == 0
    run = api.run(path(keys[0]))
    assert (run.tags, run.name, run.notes, run.group) == (["x", "y"], "best-run", "looks good", "sweep-1")
    assert cli(["tag", path(keys[0]), "", *at]) == 1
    assert "tracklog tag: tag '' is empty" in capsys.readouterr().err

    assert cli(["untag", path(keys[0]), "nope", *at]) == 1
    assert "tracklog untag: run e/p/r0 has no tag 'nope'" in capsys.readouterr().err

    assert cli(["stop", path(keys[1]), *at]) == 0
    training[1].send(finish_record(records_pb2.RUN_STATE_KILLED, exit_code=255))
    assert cli(["stop", path(keys[1]), *at]) == 1
    err = capsys.readouterr().err
    assert "tracklog stop: run e/p/r1 is killed, not running" in err

    # Without --yes and without a terminal to ask on, nothing is deleted.
    assert cli(["delete", path(keys[1]), path(keys[2]), *at]) == 1
    assert "pass --yes" in capsys.readouterr().err
    assert len(api.runs("e/p")) == 3
    assert cli(["delete", path(keys[1]), path(keys[2]), "--yes", *at]) == 0
    assert [r.id for r in api.runs("e/p")] == ["r0"]
    assert cli(["delete", path(keys[1]), "--yes", *at]) == 1
    err = capsys.readouterr().err
    assert "tracklog delete: run e/p/r1 was deleted" in err
    assert err.count("tracklog") == 1  # the command names itself once, and no Python function
