"""Liveness under load: hundreds of runs syncing into one server at once never get a live run marked
crashed. A real server on a real SQLite file (the single-writer database, where heartbeats used to
queue behind ingest), real gRPC clients standing in for daemons: each pushes its runs' rows in
batches and beats for them, with a heartbeat timeout a few beats long. Every crash marking the store
makes is recorded, and every state seen while the load runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc
from tracklog_server import RunFilter, RunKey, RunState, SqlAlchemyStore, StoreServer

from .helpers import finish_record, history_record, ref, start_record

pytestmark = pytest.mark.slow

RUNS = 300
DAEMONS = 12  # each pushes its runs one after another, as a daemon's sync worker does
ROWS_PER_BATCH = 200
KEYS = [f"metric_{i}" for i in range(10)]
BATCHES_PER_RUN = 6
HEARTBEAT_INTERVAL = 0.5
HEARTBEAT_TIMEOUT = 4.0  # eight beats: a beat stuck behind ingest for longer would be a failure


class RecordingStore(SqlAlchemyStore):
    """The real store, noting how many runs each crash-detection pass marked."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.marked: list[int] = []

    def mark_crashed(self, timeout: float) -> int:
        count = super().mark_crashed(timeout)
        if count:
            self.marked.append(count)
        return count


class Daemon:
    """One daemon's worth of runs: a sync thread pushing their frames, a heartbeat thread."""

    def __init__(self, target: str, keys: list[RunKey], stop: threading.Event) -> None:
        self.channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20),
            ],
        )
        self.stub = store_pb2_grpc.StoreStub(self.channel)
        self.keys = keys
        self.stop = stop
        self.seq = dict.fromkeys(keys, 0)
        self.started: set[RunKey] = set()
        self.beat_seconds: list[float] = []
        self.busy_answers = 0
        self.errors: list[str] = []
        self.rows = 0

    def _ingest(self, key: RunKey, *records: bytes) -> None:
        first = self.seq[key] + 1
        frames = [records_pb2.Frame(seq=first + i, record=r) for i, r in enumerate(records)]
        request = store_pb2.IngestRequest(ref=ref(key), frames=frames, writer_token=f"{key.id:0>48}")
        while True:  # as the daemon: a busy server is asked again after a short backoff
            try:
                response = self.stub.Ingest(request, timeout=60)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    self.busy_answers += 1
                    time.sleep(0.05)  # the daemon's retry backoff, not a synchronisation
                    continue
                raise
            assert response.accepted, response
            self.seq[key] = response.applied_through
            return

    def sync(self) -> None:
        try:
            for key in self.keys:
                self._ingest(key, start_record(key, writer_token=f"{key.id:0>48}"))
                self.started.add(key)
            for batch in range(BATCHES_PER_RUN):
                for key in self.keys:
                    steps = range(batch * ROWS_PER_BATCH, (batch + 1) * ROWS_PER_BATCH)
                    self._ingest(key, history_record((s, dict.fromkeys(KEYS, float(s))) for s in steps))
                    self.rows += ROWS_PER_BATCH
            for key in self.keys:
                self._ingest(key, finish_record())
        except Exception as exc:  # reported by the test, never lost in a thread
            self.errors.append(repr(exc))

    def beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_INTERVAL):
            live = [ref(k) for k in self.keys if k in self.started]
            began = time.monotonic()
            try:
                self.stub.Heartbeat(store_pb2.HeartbeatRequest(runs=live), timeout=HEARTBEAT_TIMEOUT)
            except grpc.RpcError as exc:
                self.errors.append(f"heartbeat failed: {exc.code()}")
            self.beat_seconds.append(time.monotonic() - began)


def _watch(store: SqlAlchemyStore, stop: threading.Event, seen: set[str]) -> Callable[[], None]:
    def run() -> None:
        while not stop.wait(0.2):
            seen.update(r.state.value for r in store.list_runs(RunFilter(project="load")))

    return run


def test_hundreds_of_runs_syncing_at_once_are_never_marked_crashed_while_alive(tmp_path: Path) -> None:
    store = RecordingStore(f"sqlite:///{tmp_path / 'store.db'}")
    server = StoreServer(
        "", port=0, http_port=None, heartbeat_timeout=HEARTBEAT_TIMEOUT, crash_check_interval=0.2, store=store
    )
    server.start()
    stop = threading.Event()
    keys = [RunKey("load", "load", f"r{i:04d}") for i in range(RUNS)]
    daemons = [Daemon(server.grpc_address, keys[i::DAEMONS], stop) for i in range(DAEMONS)]
    seen: set[str] = set()
    threads = [threading.Thread(target=_watch(store, stop, seen), daemon=True)]
    threads += [threading.Thread(target=d.beat, daemon=True) for d in daemons]
    syncs = [threading.Thread(target=d.sync, daemon=True) for d in daemons]
    try:
        for t in threads + syncs:
            t.start()
        for t in syncs:
            t.join(timeout=150)
            assert not t.is_alive(), "the load did not finish in time"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        for d in daemons:
            d.channel.close()
        server.stop()
    errors = [e for d in daemons for e in d.errors]
    assert not errors, errors[:5]
    assert store.marked == [], f"live runs marked crashed: {store.marked}"
    assert RunState.CRASHED.value not in seen
    slowest = max(s for d in daemons for s in d.beat_seconds)
    assert slowest < HEARTBEAT_TIMEOUT / 2, f"a heartbeat took {slowest:.2f}s"
    reopened = SqlAlchemyStore(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        runs = reopened.list_runs(RunFilter(project="load"))
        assert len(runs) == RUNS
        assert {r.state for r in runs} == {RunState.FINISHED}
        assert sum(r.history_rows for r in runs) == sum(d.rows for d in daemons) == RUNS * 6 * ROWS_PER_BATCH
    finally:
        reopened.close()
