"""``Api().runs(...)`` as a lazy sequence, ``group_by``, ``Api().project(...)``, deleting by filter,
and ``tracklog runs/delete`` with --filter, over real gRPC to a real store server."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tracklog import Api
from tracklog._cli import main as cli
from tracklog._errors import NotFoundError, UsageError
from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc
from tracklog_server import RunKey, StoreServer

from .helpers import RunWriter, history_record, ref, start_record


class SearchCalls:
    """Counts SearchRuns calls by wrapping the Api's stub method (the server is real)."""

    def __init__(self, api: Api) -> None:
        self.count = 0
        real = api._stub.SearchRuns

        def call(request: Any, **kw: Any) -> Any:
            self.count += 1
            return real(request, **kw)

        api._stub.SearchRuns = call  # type: ignore[method-assign]


def send(stub: store_pb2_grpc.StoreStub, key: RunKey, *records: bytes) -> None:
    frames = [records_pb2.Frame(seq=s, record=r) for s, r in RunWriter(key).frames(*records)]
    assert stub.Ingest(store_pb2.IngestRequest(ref=ref(key), frames=frames), timeout=10).accepted


def make_project(stub: store_pb2_grpc.StoreStub, n: int = 7) -> None:
    for i in range(n):
        key = RunKey("alice", "proj", f"r{i}")
        config = {"lr": 0.1 * i, "optimizer": "adam" if i % 2 else "sgd", "model": {"depth": i % 3}}
        send(
            stub,
            key,
            start_record(key, name=f"run-{i}", config=config, tags=["even"] if i % 2 == 0 else []),
            history_record([(0, {"acc": i / 10, "loss": 1.0 / (i + 1)})]),
        )


def test_runs_are_a_lazy_sequence_fetched_page_by_page(api: Api, stub: store_pb2_grpc.StoreStub) -> None:
    make_project(stub)
    calls = SearchCalls(api)
    runs = api.runs("alice/proj", filters={"config.lr": {"$gt": 0.15}}, order="-summary.acc", per_page=2)
    assert calls.count == 0  # nothing is fetched before it is needed
    assert len(runs) == 5
    assert calls.count == 1
    assert runs[0].id == "r6"
    assert runs[4].id == "r2"  # fetches the pages up to it
    assert calls.count == 3
    assert [r.id for r in runs] == ["r6", "r5", "r4", "r3", "r2"]
    assert [r.id for r in runs[1:3]] == ["r5", "r4"]
    assert runs[-1].id == "r2"
    with pytest.raises(IndexError):
        runs[5]
    assert calls.count == 3  # iterating again reads what was fetched


def test_filters_read_as_wandb_users_write_them(api: Api, stub: store_pb2_grpc.StoreStub) -> None:
    make_project(stub)
    ids = [
        r.id for r in api.runs("alice/proj", {"$or": [{"tags": "even"}, {"config.model.depth": 2}]}, "+name")
    ]
    assert ids == ["r0", "r2", "r4", "r5", "r6"]
    assert [r.id for r in api.runs("alice/proj", {"display_name": {"$regex": "^run-[12]$"}}, "name")] == [
        "r1",
        "r2",
    ]
    assert len(api.runs("alice/proj", limit=3)) == 3
    assert [r.id for r in api.runs("alice/proj", limit=3)] == ["r6", "r5", "r4"]  # newest first


def test_a_bad_filter_or_order_raises_a_usage_error_naming_it(
    api: Api, stub: store_pb2_grpc.StoreStub
) -> None:
    make_project(stub, 1)
    with pytest.raises(UsageError, match=r"unknown operator '\$gtt'"):
        len(api.runs("alice/proj", {"config.lr": {"$gtt": 1}}))
    with pytest.raises(UsageError, match="unknown field 'colour'"):
        list(api.runs("alice/proj", order="-colour"))
    with pytest.raises(UsageError, match="per_page"):
        api.runs("alice/proj", per_page=0)
    with pytest.raises(UsageError, match="filters cannot be sent as JSON"):
        api.runs("alice/proj", {"config.lr": object()})


def test_group_by_counts_runs_and_summarizes_numbers(api: Api, stub: store_pb2_grpc.StoreStub) -> None:
    make_project(stub)
    groups = api.runs("alice/proj").group_by("config.optimizer")
    assert [(g.value, g.count) for g in groups] == [("adam", 3), ("sgd", 4)]
    adam = groups[0].summary["acc"]
    assert (adam.count, adam.min, adam.max) == (3, 0.1, 0.5)
    assert adam.mean == pytest.approx(0.3)
    filtered = api.runs("alice/proj", {"config.lr": {"$lt": 0.25}}).group_by("config.model.depth")
    assert [(g.value, g.type, g.count) for g in filtered] == [(0, "int", 1), (1, "int", 1), (2, "int", 1)]
    with pytest.raises(UsageError, match="tags"):
        api.runs("alice/proj").group_by("tags")


def test_a_project_lists_its_keys_with_types_and_ranges(api: Api, stub: store_pb2_grpc.StoreStub) -> None:
    make_project(stub)
    project = api.project("alice/proj")
    assert (project.path, project.runs) == ("alice/proj", 7)
    config = {k.key: k for k in project.config_keys()}
    assert sorted(config) == ["lr", "model.depth", "optimizer"]
    assert (config["lr"].min, config["lr"].max) == (0.0, pytest.approx(0.6))
    assert (config["optimizer"].types, config["optimizer"].min) == ({"str": 7}, None)
    summary = {k.key: k for k in project.summary_keys()}
    assert (summary["loss"].max, summary["acc"].types) == (1.0, {"float": 7})
    assert api.project("alice/empty").runs == 0


def test_delete_runs_by_filter_with_a_dry_run_first(api: Api, stub: store_pb2_grpc.StoreStub) -> None:
    make_project(stub)
    would = api.delete_runs("alice/proj", filters={"config.optimizer": "adam"}, dry_run=True)
    assert would == ["alice/proj/r1", "alice/proj/r3", "alice/proj/r5"]
    assert len(api.runs("alice/proj")) == 7
    assert api.delete_runs("alice/proj", filters={"config.optimizer": "adam"}) == would
    assert len(api.runs("alice/proj")) == 4
    with pytest.raises(NotFoundError, match="deleted"):
        api.run("alice/proj/r1")
    with pytest.raises(UsageError, match="needs a filter"):
        api.delete_runs("alice/proj", filters={})


def test_every_project_is_listed_without_a_path(api: Api, stub: store_pb2_grpc.StoreStub) -> None:
    make_project(stub, 2)
    other = RunKey("bob", "x", "b0")
    send(stub, other, start_record(other))
    runs = api.runs()
    assert sorted(r.path for r in runs) == ["alice/proj/r0", "alice/proj/r1", "bob/x/b0"]
    with pytest.raises(UsageError, match="one project"):
        runs.group_by("state")


def test_the_runs_command_prints_an_aligned_table(
    server: StoreServer, stub: store_pb2_grpc.StoreStub, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(stub, 4)
    code = cli(
        [
            *(
                "runs",
                "alice/proj",
                "--server",
                server.grpc_address,
                "--filter",
                '{"config.lr": {"$gte": 0.1}}',
            ),
            *("--sort", "-summary.acc", "--columns", "id,name,config.lr,summary.acc,tags,config.model.depth"),
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "config.lr", "summary.acc", "TAGS", "config.model.depth"]
    assert [line.split()[0] for line in lines[1:]] == ["r3", "r2", "r1"]
    assert lines[1].index("0.3") == lines[0].index("config.lr")  # columns line up
    assert lines[2].split() == ["r2", "run-2", "0.2", "0.2", "even", "2"]


def test_the_runs_command_prints_json_lines(
    server: StoreServer, stub: store_pb2_grpc.StoreStub, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(stub, 3)
    args = [
        "runs",
        "alice/proj",
        "--server",
        server.grpc_address,
        "--json",
        "--columns",
        "id,config.lr,state",
    ]
    assert cli([*args, "--sort", "+config.lr"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [
        {"id": "r0", "config.lr": 0.0, "state": "running"},
        {"id": "r1", "config.lr": 0.1, "state": "running"},
        {"id": "r2", "config.lr": 0.2, "state": "running"},
    ]
    assert math.isclose(rows[2]["config.lr"], 0.2)


def test_the_runs_command_names_a_bad_filter(
    server: StoreServer, stub: store_pb2_grpc.StoreStub, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(stub, 1)
    base = ["runs", "alice/proj", "--server", server.grpc_address]
    assert cli([*base, "--filter", "{not json"]) == 1
    assert "tracklog runs: --filter is not valid JSON" in capsys.readouterr().err
    assert cli([*base, "--filter", '{"config.lr": {"$bad": 1}}']) == 1
    err = capsys.readouterr().err
    assert err.startswith("tracklog runs: ")
    assert err.count("tracklog runs:") == 1  # said once, as the command's
    assert "'$bad'" in err
    assert cli([*base, "--columns", "id,colour"]) == 1
    assert "unknown column 'colour'" in capsys.readouterr().err


def test_the_delete_command_deletes_by_filter_after_a_dry_run(
    server: StoreServer, stub: store_pb2_grpc.StoreStub, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(stub, 4)
    base = ["delete", "alice/proj", "--server", server.grpc_address, "--filter", '{"tags": "even"}']
    assert cli([*base, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 runs would be deleted:\n  alice/proj/r0\n  alice/proj/r2\n" in out
    assert cli([*base, "--yes"]) == 0
    assert "deleted 2 runs" in capsys.readouterr().out
    with Api(server.grpc_address) as api:
        assert [r.id for r in api.runs("alice/proj", order="+id")] == ["r1", "r3"]
    assert cli([*base, "--yes"]) == 0
    assert "no runs in alice/proj match the filter" in capsys.readouterr().out


def test_the_runs_command_without_search_options_still_lists_the_project(
    server: StoreServer, stub: store_pb2_grpc.StoreStub, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(stub, 2)
    assert cli(["runs", "alice/proj", "--server", server.grpc_address]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["RUN", "NAME", "STATE"]
    assert [line.split()[0] for line in lines[1:]] == ["alice/proj/r1", "alice/proj/r0"]


def test_runs_compare_equal_to_a_list_of_the_same_runs(api: Api, stub: store_pb2_grpc.StoreStub) -> None:
    assert api.runs("alice/proj") == []
    make_project(stub, 1)
    runs = api.runs("alice/proj")
    assert runs == [runs[0]]
    assert runs != []
