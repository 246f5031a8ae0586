"""The one retry policy: which store failures are retried, how long it waits, and how gRPC errors
become tracklogd errors."""

from __future__ import annotations

import threading

import grpc
import pytest

from tracklogd import (
    RETRYABLE_CODES,
    GrpcStoreClient,
    RetryPolicy,
    StoreError,
    StoreRejected,
    StoreUnavailable,
)
from tracklogd.testing import FakeStoreServer, make_ref


def test_the_retryable_codes_are_exactly_the_transient_ones() -> None:
    assert (
        frozenset(
            {
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.ABORTED,
                grpc.StatusCode.INTERNAL,
                grpc.StatusCode.UNKNOWN,
                grpc.StatusCode.CANCELLED,
            }
        )
        == RETRYABLE_CODES
    )
    assert isinstance(RETRYABLE_CODES, frozenset)


def test_a_grpc_failure_becomes_a_store_error_chained_to_it(store: FakeStoreServer) -> None:
    client = GrpcStoreClient(store.target)
    try:
        store.store.fail_next = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INVALID_ARGUMENT]
        with pytest.raises(StoreUnavailable) as transient:
            client.ingest(make_ref(), [])
        with pytest.raises(StoreRejected) as rejected:
            client.ingest(make_ref(), [])
    finally:
        client.close()
    assert transient.value.code is grpc.StatusCode.UNAVAILABLE
    assert isinstance(transient.value.__cause__, grpc.RpcError)
    assert rejected.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "INVALID_ARGUMENT" in str(rejected.value)


def test_a_transient_failure_is_retried_with_growing_capped_waits_until_the_call_succeeds() -> None:
    calls = 0
    waits: list[float] = []

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 6:
            raise StoreUnavailable("down", grpc.StatusCode.UNAVAILABLE)
        return "ok"

    policy = RetryPolicy(initial=0.1, maximum=0.5, jitter=0.05)
    result = policy.call(flaky, stop=threading.Event(), sleep=waits.append)
    assert result == "ok"
    assert calls == 6
    assert len(waits) == 5
    assert 0.1 <= waits[0] <= 0.15
    assert 0.2 <= waits[1] <= 0.25
    assert all(w <= 0.5 for w in waits)
    assert waits[-1] == pytest.approx(0.5, abs=0.05)


def test_a_rejection_is_raised_at_once_without_retrying() -> None:
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise StoreRejected("bad", grpc.StatusCode.INVALID_ARGUMENT)

    with pytest.raises(StoreRejected):
        RetryPolicy().call(refused, stop=threading.Event(), sleep=lambda s: None)
    assert calls == 1


def test_shutdown_cuts_a_backoff_short_and_makes_no_further_call() -> None:
    stop = threading.Event()
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        threading.Timer(0.05, stop.set).start()
        raise StoreUnavailable("down", grpc.StatusCode.UNAVAILABLE)

    # Without the stop the first backoff alone would take an hour.
    with pytest.raises(StoreUnavailable):
        RetryPolicy(initial=3600.0, maximum=3600.0).call(down, stop=stop)
    assert calls == 1


def test_retrying_gives_up_after_the_configured_time() -> None:
    def down() -> None:
        raise StoreUnavailable("down", grpc.StatusCode.UNAVAILABLE)

    with pytest.raises(StoreError, match="down"):
        RetryPolicy(initial=0.01, maximum=0.01, jitter=0.0, give_up_after=0.05).call(
            down, stop=threading.Event()
        )


def test_each_retry_is_reported_with_its_error_and_wait() -> None:
    seen: list[tuple[str, float]] = []
    calls = 0

    def once_down() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("down once", grpc.StatusCode.UNAVAILABLE)
        return calls

    RetryPolicy(initial=0.2, jitter=0.0).call(
        once_down,
        stop=threading.Event(),
        sleep=lambda s: None,
        on_retry=lambda exc, wait: seen.append((str(exc), wait)),
    )
    assert seen == [("down once", 0.2)]
