"""Rate-limited logging: a failure that repeats every 100 ms must not write a line every 100 ms."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RateLimitedLog:
    """Logs a message at most once per ``interval`` seconds per key; the next line that gets through
    says how many were suppressed in between. Thread-safe."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: object, exc_info: bool = False) -> bool:
        """Logs unless ``key`` was logged less than ``interval`` ago; returns whether it logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += f" ({suppressed} similar messages suppressed)"
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(self, key: str, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)

    def forget(self, key: str) -> None:
        """Lets the next message for ``key`` through at once (e.g. after the failure cleared)."""
        with self._lock:
            self._last.pop(key, None)
            self._suppressed.pop(key, None)
