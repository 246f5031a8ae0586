"""Test helpers shipped with the package: a clock the test moves by hand."""

from __future__ import annotations

import threading


class FakeClock:
    """A clock for ``StoreServer(clock=...)``/``SqlAlchemyStore(clock=...)``: unix seconds that only
    move when ``advance`` is called. Safe to read from the server's threads."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now
