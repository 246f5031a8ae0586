"""The process-wide current run and how the process ends it.

Exit rules: normal exit or ``finish()`` -> finished; an uncaught exception -> failed;
KeyboardInterrupt or SIGTERM -> killed; ``sys.exit(n)`` with n != 0 -> failed. ``finish()`` also
runs at interpreter exit. A forked child (a DataLoader worker) never logs to or ends its parent's run.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from tracklog.v1 import records_pb2

if TYPE_CHECKING:
    from tracklog._run import Run

FINISHED = records_pb2.RUN_STATE_FINISHED
FAILED = records_pb2.RUN_STATE_FAILED
KILLED = records_pb2.RUN_STATE_KILLED


class _Hooks:
    """Installed once per process, on the first init()."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.exit_code: int | None = None
        self.exception: BaseException | None = None
        self.signalled: int | None = None
        self._orig_exit = sys.exit
        self._orig_excepthook = sys.excepthook

    def install(self) -> None:
        sys.exit = self._exit  # type: ignore[assignment]
        sys.excepthook = self._excepthook
        # Only where Python allows handlers, and never over a handler the script installed itself.
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, self._on_sigterm)
        atexit.register(self._at_exit)
        os.register_at_fork(after_in_child=_after_fork_in_child)

    def _exit(self, code: str | int | None = None) -> None:
        self.exit_code = 0 if code is None else code if isinstance(code, int) else 1
        self._orig_exit(code)

    def _excepthook(self, kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        self.exception = value
        self._orig_excepthook(kind, value, tb)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # Unwind the main thread like sys.exit would, so `with` blocks and finally clauses run,
        # then atexit ends the run as killed; the process exits with the conventional 128+15.
        self.signalled = signum
        raise SystemExit(128 + signum)

    def _at_exit(self) -> None:
        run = _current
        if run is None or os.getpid() != self.pid:
            return
        if self.signalled is not None:
            run._end(KILLED, 128 + self.signalled, reason="SIGTERM")
        elif self.exception is not None:
            state, code = outcome(self.exception)
            run._end(state, code, reason=describe(self.exception))
        elif self.exit_code:
            run._end(FAILED, self.exit_code, reason=f"exit code {self.exit_code}")
        else:
            run._end(FINISHED, 0)


_hooks: _Hooks | None = None
_current: Run | None = None


def outcome(exc: BaseException | None) -> tuple[Any, int]:
    """The final state and exit code for a run ended by ``exc`` (None: a normal end)."""
    if exc is None:
        return FINISHED, 0
    if _hooks is not None and _hooks.signalled is not None:
        return KILLED, 128 + _hooks.signalled
    if isinstance(exc, KeyboardInterrupt):
        return KILLED, 130
    if isinstance(exc, SystemExit):
        code = exc.code
        code = 0 if code is None else code if isinstance(code, int) else 1
        return (FINISHED if code == 0 else FAILED), code
    return FAILED, 1


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    return f"{type(exc).__name__}: {exc}"[:1000]


def adopt(run: Run) -> None:
    """Makes ``run`` the current run (``tracklog.run``), installing the exit hooks once."""
    global _current, _hooks
    if _hooks is None:
        _hooks = _Hooks()
        _hooks.install()
    _current = run
    import tracklog

    tracklog.run = run


def current() -> Run | None:
    return _current


def forget(run: Run) -> None:
    global _current
    if _current is run:
        _current = None
        import tracklog

        tracklog.run = None


def _after_fork_in_child() -> None:
    # The child has no sender thread; its copy of the run must stay silent and must not end the
    # parent's run at exit. Logging from a worker is dropped with one warning.
    global _current
    run = _current
    if run is not None:
        run._disown()
    _current = None
