"""The two parts that keep heartbeats from waiting behind ingest: SQLite write turns with a lane for
urgent writes, and the ingest gate that keeps RPC threads free. Real threads; waits on conditions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tracklog_server import StoreUnavailableError
from tracklog_server.application._ingest import RESERVED_THREADS, IngestGate
from tracklog_server.storage._write_turns import WriteTurns


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)  # polling a counter with a deadline, not timing the threads


def test_an_urgent_write_goes_before_ordinary_writes_that_waited_longer() -> None:
    turns = WriteTurns()
    order: list[str] = []

    def write(name: str, urgent: bool) -> None:
        with turns.turn(urgent):
            order.append(name)

    with turns.turn():  # an ingest holds the write lock
        ordinary = [threading.Thread(target=write, args=(f"ingest-{i}", False)) for i in range(3)]
        for t in ordinary:
            t.start()
        _until(lambda: turns.waiting == 3)
        heartbeat = threading.Thread(target=write, args=("heartbeat", True))
        heartbeat.start()
        _until(lambda: turns.waiting == 4)
    for t in [*ordinary, heartbeat]:
        t.join(10)
    assert order[0] == "heartbeat"
    assert sorted(order[1:]) == ["ingest-0", "ingest-1", "ingest-2"]


def test_turns_are_released_when_the_write_fails() -> None:
    turns = WriteTurns()
    with pytest.raises(RuntimeError), turns.turn():
        raise RuntimeError("the transaction failed")
    done = threading.Event()

    def write() -> None:
        with turns.turn():
            done.set()

    threading.Thread(target=write).start()
    assert done.wait(10)


def test_the_ingest_gate_refuses_at_once_beyond_its_slots_and_frees_a_slot_on_leave() -> None:
    gate = IngestGate.for_threads(RESERVED_THREADS + 2)
    assert gate.slots == 2
    gate.enter()
    gate.enter()
    with pytest.raises(StoreUnavailableError, match="the store is busy"):
        gate.enter()
    gate.leave()
    gate.enter()
    assert IngestGate.for_threads(1).slots == 1  # a tiny pool still ingests
