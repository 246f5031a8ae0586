"""The one retry policy of the daemon: which store failures are transient, how long to wait between
attempts, and how a gRPC error becomes a tracklogd error.

Every store call goes through ``translated()`` (gRPC -> StoreUnavailable / StoreRejected, once) and,
where it is worth repeating, through ``RetryPolicy.call()`` (tenacity: exponential backoff with
jitter, capped; retries StoreUnavailable only; sleeps are waits on an Event, so shutdown cuts them
short).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import grpc
import tenacity

from tracklogd._errors import StoreError, StoreRejected, StoreUnavailable

T = TypeVar("T")

# A store answering with one of these may well accept the same request later; the server applies a
# batch at most once, so resending after any of them never duplicates data.
RETRYABLE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        # A store that shuts down cancels the calls in flight; it is coming back, not refusing.
        grpc.StatusCode.CANCELLED,
    }
)


def store_error(exc: grpc.RpcError, what: str) -> StoreError:
    """The tracklogd error for a failed RPC: StoreUnavailable if retrying may help, else StoreRejected."""
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc) or "no details"
    name = code.name if code is not None else "error"
    if code is None or code in RETRYABLE_CODES:
        return StoreUnavailable(f"{what}: {name}: {details}", code)
    return StoreRejected(f"{what}: {name}: {details}", code)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turns a grpc.RpcError raised inside into the matching StoreError (chained)."""
    try:
        yield
    except grpc.RpcError as exc:
        raise store_error(exc, what) from exc


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff ``min(initial * 2**n, maximum - jitter) + uniform(0, jitter)`` seconds; retries until
    the stop event is set, or for at most ``give_up_after`` seconds when that is given."""

    initial: float = 0.1
    maximum: float = 2.0
    jitter: float = 0.2
    give_up_after: float | None = None

    def call(
        self,
        fn: Callable[[], T],
        *,
        stop: threading.Event,
        sleep: Callable[[float], object] | None = None,
        on_retry: Callable[[StoreError, float], None] | None = None,
    ) -> T:
        """Calls ``fn`` until it returns or raises something other than StoreUnavailable.

        Raises the last StoreUnavailable when stopped or out of time; StoreRejected and other errors
        propagate at once. ``sleep`` defaults to ``stop.wait``; a caller may pass a wait on another
        event that is also set on shutdown (e.g. "the server may be back").
        """
        stop_rule: tenacity.stop.stop_base = tenacity.stop_when_event_set(stop)
        if self.give_up_after is not None:
            stop_rule = stop_rule | tenacity.stop_after_delay(self.give_up_after)
        wait_fn = sleep if sleep is not None else stop.wait

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is None or state.outcome is None or state.next_action is None:
                return
            exc = state.outcome.exception()
            if isinstance(exc, StoreError):
                on_retry(exc, state.next_action.sleep)

        def sleep_for(seconds: float) -> None:
            wait_fn(seconds)

        def attempt() -> T:
            if stop.is_set():  # woken by shutdown: make no further call
                raise StoreUnavailable("stopped before the call")
            return fn()

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(StoreUnavailable),
            # initial * 2**n, capped so that adding the jitter stays within maximum
            wait=tenacity.wait_exponential(multiplier=self.initial, max=max(0.0, self.maximum - self.jitter))
            + tenacity.wait_random(0, self.jitter),
            stop=stop_rule,
            sleep=sleep_for,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(attempt)
