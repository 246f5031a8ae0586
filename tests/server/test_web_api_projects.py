"""The web API of projects: the list, a description, the runs table (filter, order, pages, search),
groups and bulk edits, over a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tracklog_server import RunKey, StoreServer

from .helpers import RunWriter, finish_record, history_record, start_record, system_record
from .web import Web

RUNS = "/api/v1/projects/alice/sweep/runs"


@pytest.fixture
def server(db_url: str) -> Iterator[StoreServer]:
    srv = StoreServer(db_url, port=0, http_port=0)
    srv.start()
    yield srv
    srv.stop(grace=1)


@pytest.fixture
def web(server: StoreServer) -> Iterator[Web]:
    client = Web(server.http_url)
    yield client
    client.close()


def sweep(server: StoreServer, n: int = 6) -> None:
    """Runs s0..s{n-1}: lr 0.1*i, optimizer adam for even i, acc i/10; odd runs finished."""
    for i in range(n):
        key = RunKey("alice", "sweep", f"s{i}")
        config = {"lr": round(0.1 * i, 3), "optimizer": "adam" if i % 2 == 0 else "sgd"}
        records = [
            start_record(key, name=f"run-{i}", config=config, start_time=1_700_000_000.0 + i),
            history_record([(0, {"acc": i / 10})]),
        ]
        if i == 0:
            records.append(system_record([1_700_000_000.0], {"system/cpu": [5.0]}))
        if i % 2:
            records.append(finish_record(exit_code=0))
        server.store.ingest(key, RunWriter(key).frames(*records))
    other = RunKey("bob", "other", "o1")
    server.store.ingest(other, RunWriter(other).frames(start_record(other, start_time=1_600_000_000.0)))


def q(filters: object) -> str:
    return quote(json.dumps(filters))


def test_projects_are_listed_with_their_run_counts_latest_first(server: StoreServer, web: Web) -> None:
    sweep(server)
    projects = web.ok("/api/v1/projects")["projects"]
    assert [(p["entity"], p["project"], p["run_count"]) for p in projects] == [
        ("alice", "sweep", 6), ("bob", "other", 1),
    ]  # fmt: skip
    assert projects[0]["last_run_at"] == "2023-11-14T22:13:25.000Z"


def test_a_project_description_lists_config_summary_metric_and_system_keys(
    server: StoreServer, web: Web
) -> None:
    sweep(server)
    d = web.ok("/api/v1/projects/alice/sweep")
    assert d["run_count"] == 6
    config = {k["key"]: k for k in d["config_keys"]}
    assert (config["lr"]["type"], config["lr"]["min"], config["lr"]["max"]) == ("number", 0.0, 0.5)
    assert (config["optimizer"]["type"], config["optimizer"]["values"]) == ("string", ["adam", "sgd"])
    assert [k["key"] for k in d["summary_keys"]] == ["acc"]
    assert d["metric_keys"] == ["acc"]
    assert web.get("/api/v1/projects/alice/nothing-here").json["run_count"] == 0


def test_the_runs_table_filters_orders_and_pages_with_a_cursor(server: StoreServer, web: Web) -> None:
    sweep(server)
    page = web.ok(f"{RUNS}?per_page=4")
    assert [r["id"] for r in page["runs"]] == ["s5", "s4", "s3", "s2"]
    assert page["total"] == 6
    rest = web.ok(f"{RUNS}?per_page=4&cursor={page['next_cursor']}")
    assert [r["id"] for r in rest["runs"]] == ["s1", "s0"]
    assert rest["next_cursor"] is None
    flt = {"$and": [{"state": "finished"}, {"config.lr": {"$lt": 0.4}}]}
    assert [r["id"] for r in web.ok(f"{RUNS}?filter={q(flt)}&order=%2Bname")["runs"]] == ["s1", "s3"]
    flt2 = {"$or": [{"config.optimizer": "adam"}, {"summary.acc": {"$gte": 0.5}}]}
    assert [r["id"] for r in web.ok(f"{RUNS}?filter={q(flt2)}&order=-config.lr")["runs"]] == [
        "s5", "s4", "s2", "s0",
    ]  # fmt: skip
    assert [r["id"] for r in web.ok(f"{RUNS}?filter={q({'name': {'$in': ['run-1', 'run-2']}})}")["runs"]] == [
        "s2", "s1",
    ]  # fmt: skip


def test_the_search_box_matches_names_by_text_or_by_regex(server: StoreServer, web: Web) -> None:
    sweep(server)
    assert [r["id"] for r in web.ok(f"{RUNS}?search=RUN-3")["runs"]] == ["s3"]
    assert [r["id"] for r in web.ok(f"{RUNS}?search={quote('/^run-[12]$/')}")["runs"]] == ["s2", "s1"]
    reply = web.get(f"{RUNS}?search={quote('/(/')}")
    assert reply.status == 400
    assert "is not a valid pattern" in reply.json["error"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("filter=%7Bnot%20json", "not valid JSON"),
        (f"filter={quote(json.dumps({'nope': 1}))}", "unknown field 'nope'"),
        (f"filter={quote(json.dumps({'state': {'$where': 'x'}}))}", "$where"),
        (f"filter={quote(json.dumps([1]))}", "must be a JSON object"),
        ("order=-nope", "unknown field 'nope'"),
        ("cursor=%21%21", "cursor"),
        ("per_page=0", "per_page"),
    ],
)
def test_a_bad_filter_order_or_cursor_is_a_400_naming_it(
    server: StoreServer, web: Web, query: str, message: str
) -> None:
    sweep(server, 1)
    reply = web.get(f"{RUNS}?{query}")
    assert reply.status == 400
    assert message in reply.json["error"]


def test_groups_count_runs_and_give_min_mean_max_of_summary_keys(server: StoreServer, web: Web) -> None:
    sweep(server)
    groups = web.ok("/api/v1/projects/alice/sweep/groups?by=config.optimizer")["groups"]
    by_value = {g["value"]: g for g in groups}
    assert by_value["adam"]["count"] == 3
    assert by_value["adam"]["summary"]["acc"] == pytest.approx({"min": 0.0, "mean": 0.2, "max": 0.4})
    assert by_value["sgd"]["summary"]["acc"] == pytest.approx({"min": 0.1, "mean": 0.3, "max": 0.5})
    states = web.ok(f"/api/v1/projects/alice/sweep/groups?by=state&filter={q({'config.lr': {'$gt': 0.2}})}")
    assert sorted((g["value"], g["count"]) for g in states["groups"]) == [("finished", 2), ("running", 1)]
    assert web.get("/api/v1/projects/alice/sweep/groups").status == 400


def test_bulk_edits_tag_untag_group_and_delete_selected_runs(server: StoreServer, web: Web) -> None:
    sweep(server)
    bulk = "/api/v1/projects/alice/sweep/runs/bulk"
    reply = web.send("POST", bulk, {"ids": ["s0", "s1"], "action": "tag", "tags": ["best", "v2"]})
    assert reply.json == {"changed": 2}
    assert web.ok("/api/v1/runs/alice/sweep/s1")["tags"] == ["best", "v2"]
    web.send("POST", bulk, {"ids": ["s1"], "action": "untag", "tags": ["v2"]})
    assert web.ok("/api/v1/runs/alice/sweep/s1")["tags"] == ["best"]
    web.send("POST", bulk, {"ids": ["s2", "s3"], "action": "group", "group": "lr-sweep"})
    assert web.ok(f"{RUNS}?filter={q({'group': 'lr-sweep'})}")["total"] == 2
    # An unknown run fails the whole request before anything changes.
    reply = web.send("POST", bulk, {"ids": ["s4", "missing"], "action": "tag", "tags": ["x"]})
    assert reply.status == 404
    assert web.ok("/api/v1/runs/alice/sweep/s4")["tags"] == []
    reply = web.send("POST", bulk, {"ids": ["s4", "s5"], "action": "delete", "delete_files": True})
    assert reply.json == {"changed": 2}
    assert web.ok(RUNS)["total"] == 4
    assert web.send("POST", bulk, {"ids": [], "action": "delete"}).status == 400
    assert web.send("POST", bulk, {"ids": ["s0"], "action": "explode"}).status == 400
    assert web.send("POST", bulk, {"ids": ["s0"], "action": "tag"}).status == 400
