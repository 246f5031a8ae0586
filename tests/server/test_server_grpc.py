"""The gRPC service on a real server (port 0) over a real database."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from tracklog._history import decode_rows
from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc
from tracklog_server import InvalidInputError, RunKey, StoreServer
from tracklog_server.testing import FakeClock

from .helpers import (
    RunWriter,
    config_record,
    finish_record,
    history_record,
    ref,
    start_record,
    wait_for,
)

TIMEOUT = 60.0


@pytest.fixture
def server(db_url: str, clock: FakeClock) -> Iterator[StoreServer]:
    srv = StoreServer(
        db_url, port=0, http_port=0, heartbeat_timeout=TIMEOUT, clock=clock, crash_check_interval=0.02
    )
    srv.start()
    yield srv
    srv.stop(grace=1)


@pytest.fixture
def channel(server: StoreServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_address) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> store_pb2_grpc.StoreStub:
    return store_pb2_grpc.StoreStub(channel)


def ingest(
    stub: store_pb2_grpc.StoreStub, key: RunKey, frames: list[tuple[int, bytes]]
) -> store_pb2.IngestResponse:
    request = store_pb2.IngestRequest(
        ref=ref(key), frames=[records_pb2.Frame(seq=s, record=r) for s, r in frames]
    )
    response: store_pb2.IngestResponse = stub.Ingest(request, timeout=10)
    return response


def get_run(stub: store_pb2_grpc.StoreStub, key: RunKey) -> store_pb2.RunView:
    view: store_pb2.RunView = stub.GetRun(store_pb2.GetRunRequest(ref=ref(key)), timeout=10)
    return view


def test_ingested_frames_come_back_through_get_run_and_history(
    stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    w = RunWriter(key)
    rows = [(s, {"loss": 1.0 / (s + 1)}) for s in range(250)]
    frames = w.frames(start_record(key, name="n", config={"lr": 0.1}), history_record(rows[:100]))
    frames += w.frames(history_record(rows[100:]), finish_record())
    response = ingest(stub, key, frames)
    assert (response.accepted, response.applied_through) == (True, 4)
    view = get_run(stub, key)
    assert (view.name, view.state, view.history_rows, view.last_step, view.last_seq) == (
        "n",
        records_pb2.RUN_STATE_FINISHED,
        250,
        249,
        4,
    )
    assert json.loads(view.config_json) == {"lr": 0.1}
    assert [(m.key, m.last, m.min, m.max) for m in view.metrics] == [("loss", 1 / 250, 1 / 250, 1.0)]
    batches = list(
        stub.History(store_pb2.HistoryRequest(ref=ref(key), keys=["loss"], page_rows=100), timeout=10)
    )
    assert [len(b.steps) // 8 for b in batches] == [100, 100, 50]
    got = list(decode_rows(batches))
    assert [r["loss"] for r in got] == [v["loss"] for _, v in rows]
    sampled = list(decode_rows(stub.History(store_pb2.HistoryRequest(ref=ref(key), samples=3), timeout=10)))
    assert [r["_step"] for r in sampled] == [0, 124, 249]
    window = stub.History(store_pb2.HistoryRequest(ref=ref(key), min_step=10, max_step=13), timeout=10)
    assert [r["_step"] for r in decode_rows(window)] == [10, 11, 12]


def test_a_garbage_frame_sent_straight_to_ingest_costs_only_itself_and_is_reported(
    stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    w = RunWriter(key)
    ingest(stub, key, w.frames(start_record(key)))
    frames = w.frames(history_record([(0, {"x": 1.0})]), b"\x08\x96\x01\xff\xff", config_record({"a": 1}))
    response = ingest(stub, key, frames)
    assert (response.accepted, response.applied_through) == (True, 4)
    assert [(r.seq, r.reason) for r in response.refused] == [(3, "record is not a valid tracklog.v1.Record")]
    view = get_run(stub, key)
    assert (view.last_seq, view.history_rows, view.config_json) == (4, 1, '{"a":1}')
    assert list(view.problems) == ["record 3 refused: record is not a valid tracklog.v1.Record"]


def test_a_gap_is_answered_with_the_last_applied_seq(stub: store_pb2_grpc.StoreStub, key: RunKey) -> None:
    ingest(stub, key, RunWriter(key).frames(start_record(key)))
    response = ingest(stub, key, [(5, config_record({"a": 1}))])
    assert (response.accepted, response.applied_through) == (False, 1)


def test_an_unparseable_request_is_invalid_argument(channel: grpc.Channel) -> None:
    raw = channel.unary_unary(
        "/tracklog.v1.Store/Ingest", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\xff\xff\xff\xff", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tracklog.v1.IngestRequest" in str(info.value.details())


def test_an_invalid_run_ref_is_invalid_argument(stub: store_pb2_grpc.StoreStub) -> None:
    bad = store_pb2.GetRunRequest(ref=records_pb2.RunRef(entity="a b", project="p", id="x"))
    with pytest.raises(grpc.RpcError) as info:
        stub.GetRun(bad, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid run entity 'a b'" in str(info.value.details())


def test_an_unknown_run_is_not_found_with_its_path(stub: store_pb2_grpc.StoreStub) -> None:
    missing = records_pb2.RunRef(entity="e", project="p", id="nope")
    for call in (
        lambda: stub.GetRun(store_pb2.GetRunRequest(ref=missing), timeout=10),
        lambda: list(stub.History(store_pb2.HistoryRequest(ref=missing), timeout=10)),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert info.value.details() == "run e/p/nope not found"


def test_runs_are_listed_in_pages(stub: store_pb2_grpc.StoreStub) -> None:
    for i in range(5):
        k = RunKey("e", "paged", f"r{i}")
        ingest(stub, k, RunWriter(k).frames(start_record(k, start_time=100.0 + i)))
    seen: list[str] = []
    token = ""
    while True:
        page = stub.ListRuns(
            store_pb2.ListRunsRequest(project="paged", limit=2, page_token=token), timeout=10
        )
        seen += [r.ref.id for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["r4", "r3", "r2", "r1", "r0"]
    running = stub.ListRuns(store_pb2.ListRunsRequest(filters_json='{"state": "running"}'), timeout=10)
    assert len(running.runs) == 5
    with pytest.raises(grpc.RpcError) as info:
        stub.ListRuns(store_pb2.ListRunsRequest(filters_json='{"config.lr": {"$lt": 1}}'), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.lr" in str(info.value.details())


def test_server_info_names_the_http_base_and_the_heartbeat_timeout(
    stub: store_pb2_grpc.StoreStub, server: StoreServer
) -> None:
    info = stub.ServerInfo(store_pb2.ServerInfoRequest(), timeout=10)
    assert info.http_url == server.http_url
    assert info.http_url.startswith("http://127.0.0.1:")
    assert info.heartbeat_timeout == TIMEOUT
    assert info.version


def test_the_servers_detector_marks_a_silent_run_crashed_and_a_heartbeat_revives_it(
    stub: store_pb2_grpc.StoreStub, key: RunKey, clock: FakeClock
) -> None:
    ingest(stub, key, RunWriter(key).frames(start_record(key)))
    clock.advance(TIMEOUT + 1)
    wait_for(
        lambda: get_run(stub, key).state == records_pb2.RUN_STATE_CRASHED, what="the run to be marked crashed"
    )
    response = stub.Heartbeat(store_pb2.HeartbeatRequest(runs=[ref(key)]), timeout=10)
    assert list(response.stop) == []
    assert get_run(stub, key).state == records_pb2.RUN_STATE_RUNNING


def test_a_second_server_on_a_busy_port_fails_to_start(server: StoreServer, db_url: str) -> None:
    other = StoreServer(db_url, port=server.grpc_port, http_port=None)
    with pytest.raises(OSError, match="cannot listen"):
        other.start()


def test_a_non_loopback_address_is_refused_without_the_explicit_flag(db_url: str) -> None:
    with pytest.raises(InvalidInputError, match="no authentication"):
        StoreServer(db_url, host="0.0.0.0")


def test_the_daemons_frames_are_routed_by_their_source_and_shown_as_the_runs_daemon_seq(
    stub: store_pb2_grpc.StoreStub, key: RunKey
) -> None:
    def ingest_as(source: int, frames: list[tuple[int, bytes]]) -> store_pb2.IngestResponse:
        request = store_pb2.IngestRequest(
            ref=ref(key),
            frames=[records_pb2.Frame(seq=s, record=r) for s, r in frames],
            source=source,  # type: ignore[arg-type]
        )
        response: store_pb2.IngestResponse = stub.Ingest(request, timeout=10)
        return response

    system = records_pb2.Record(system=records_pb2.SystemBatch()).SerializeToString()  # no rows
    assert not ingest_as(store_pb2.SOURCE_DAEMON, [(1, system)]).accepted  # the run is unknown yet
    assert ingest_as(store_pb2.SOURCE_CLIENT, [(1, start_record(key))]).applied_through == 1
    assert ingest_as(store_pb2.SOURCE_DAEMON, [(1, system), (2, system)]).applied_through == 2
    for source, frames in [(store_pb2.SOURCE_DAEMON, [(3, finish_record())]), (7, [(3, system)])]:
        with pytest.raises(grpc.RpcError) as refused:
            ingest_as(source, frames)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    view = get_run(stub, key)
    assert (view.last_seq, view.daemon_seq, view.state) == (1, 2, records_pb2.RUN_STATE_RUNNING)
