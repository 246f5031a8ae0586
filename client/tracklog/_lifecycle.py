"""The process-wide current run and how the process ends it.

Exit rules: normal exit or ``finish()`` -> finished; an uncaught exception -> failed;
KeyboardInterrupt or SIGTERM -> killed; ``sys.exit(n)`` with n != 0 -> failed. ``finish()`` also
runs at interpreter exit, and at the exit of a multiprocessing worker (which leaves through
``os._exit``, skipping atexit). A forked child (a DataLoader worker) never logs to or ends its
parent's run; it may start a run of its own.

SIGTERM: tracklog's handler (installed only over the default action) ends the current run as
killed, its rows flushed (bounded by ``SIGNAL_END_TIMEOUT``), then puts the default action back and
raises the signal again, so the process dies exactly as it would have without tracklog. A process
whose main thread is blocked where Python cannot run a handler (a lock acquire that is not woken by
the signal) is ended by a watcher thread instead (``_signals``): tracklog never keeps alive a
process that SIGTERM would have ended.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from tracklog import _signals
from tracklog.v1 import records_pb2

if TYPE_CHECKING:
    from tracklog._run import Run

FINISHED = records_pb2.RUN_STATE_FINISHED
FAILED = records_pb2.RUN_STATE_FAILED
KILLED = records_pb2.RUN_STATE_KILLED
# A terminated process ends its run within this: the flush of what it logged, not a long wait for
# a daemon that is not there (what is left is written to the spool directly).
SIGNAL_END_TIMEOUT = 5.0


class _Hooks:
    """Installed once per process, on the first init(); reset in a forked child."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.exit_code: int | None = None
        self.exception: BaseException | None = None
        self.signalled: int | None = None
        self._orig_exit = sys.exit
        self._orig_excepthook = sys.excepthook
        self._worker_hook = 0  # the pid whose multiprocessing exit ends its run
        self._sigterm_pid = 0  # the pid whose SIGTERM handler is tracklog's
        self._end_lock = threading.Lock()  # one end per signal, from the handler or the watcher

    def install(self) -> None:
        sys.exit = self._exit  # type: ignore[assignment]
        sys.excepthook = self._excepthook
        atexit.register(self._at_exit)
        os.register_at_fork(after_in_child=_after_fork_in_child)

    def install_signals(self) -> None:
        """Once per process that starts a run (a forked child starts with the default action)."""
        if self._sigterm_pid == os.getpid():
            return
        # Only where Python allows handlers, and never over a handler the script installed itself.
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
            return
        self._sigterm_pid = os.getpid()
        signal.signal(signal.SIGTERM, self._on_sigterm)
        _signals.watch(signal.SIGTERM, self._on_sigterm_blocked)

    def after_fork(self) -> None:
        self.pid = os.getpid()
        self.exit_code = self.exception = self.signalled = None
        self._end_lock = threading.Lock()
        if self._sigterm_pid:
            # The parent's handler served the parent's run: the child gets the default action
            # back (a DataLoader worker dies on SIGTERM as it would without tracklog) until it
            # starts a run of its own.
            self._sigterm_pid = 0
            with contextlib.suppress(ValueError):
                if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def watch_worker_exit(self) -> None:
        """In a multiprocessing child, end the run at the worker's exit: it leaves through
        ``os._exit`` and never runs atexit. Only touches multiprocessing if it is already loaded."""
        mp = sys.modules.get("multiprocessing")
        if mp is None or self._worker_hook == os.getpid() or mp.parent_process() is None:
            return
        from multiprocessing import util

        self._worker_hook = os.getpid()
        util.Finalize(None, self._at_worker_exit, exitpriority=100)

    def _exit(self, code: str | int | None = None) -> None:
        self.exit_code = 0 if code is None else code if isinstance(code, int) else 1
        self._orig_exit(code)

    def _excepthook(self, kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        self.exception = value
        self._orig_excepthook(kind, value, tb)

    # -- SIGTERM ------------------------------------------------------------------------------------

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """On the main thread: end the run as killed, then die as the default action would.

        No locks before the first check: a second SIGTERM (the watcher hands the signal to the main
        thread again) may run this handler inside itself, and must not wait for its outer call."""
        _signals.handled(signum)
        if self.signalled is not None:  # a nested or later call: the first one ends the process
            return
        self.signalled = signum
        self._end_and_die(signum)

    def _on_sigterm_blocked(self, signum: int) -> None:
        """On the watcher thread, when the handler did not run in time (main thread blocked)."""
        self.signalled = signum
        self._end_and_die(signum)

    def _end_and_die(self, signum: int) -> None:
        global _die_after_end
        run = _ending_run or _current
        if run is not None and run._ending:
            # The run is ending already (finish(), or the exit of a multiprocessing worker): that
            # end completes first, then ends the process (``ending``). On the main thread this
            # handler runs inside it; from the watcher, wait for it, bounded.
            _die_after_end = signum
            if threading.current_thread() is threading.main_thread():
                return
            _wait_until(lambda: not run._ending, SIGNAL_END_TIMEOUT * 2)
        elif self._end_lock.acquire(blocking=False):
            if run is not None:
                _end_killed(run, signum)
        else:  # the other of handler and watcher is ending the run: it dies when done
            self._end_lock.acquire(timeout=SIGNAL_END_TIMEOUT * 2)
        die(signum)

    # -- exits --------------------------------------------------------------------------------------

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

    def _at_worker_exit(self) -> None:
        # Runs inside multiprocessing's exit, in the ``finally`` around the target: an exception
        # on its way out is the target's.
        run = _current
        if run is None or os.getpid() != self.pid:
            return
        exc = sys.exc_info()[1]
        state, code = outcome(exc)
        run._end(state, code, reason=describe(exc), timeout=SIGNAL_END_TIMEOUT * 2)


def _end_killed(run: Run, signum: int) -> None:
    """Ends ``run`` as killed by ``signum``, bounded. The main thread was interrupted anywhere, maybe
    holding a lock the end needs (the console's, the sender's wake-up), so there the end runs on a
    thread of its own: a lock held below the handler delays it (until the deadline), never hangs."""
    name = signal.Signals(signum).name

    def end() -> None:
        run._end(KILLED, 128 + signum, reason=name, timeout=SIGNAL_END_TIMEOUT, prompt=True)

    if threading.current_thread() is not threading.main_thread():
        end()
        return
    ender = threading.Thread(target=end, name="tracklog-sigterm", daemon=True)
    ender.start()
    ender.join(SIGNAL_END_TIMEOUT + 1.0)


def _wait_until(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)  # a watcher thread waiting for another thread's end of the run


def die(signum: int) -> None:
    """Ends this process by ``signum`` with its default action, as if tracklog had no handler."""
    _signals.unwatch()
    _signals.default_action(signum)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    signal.raise_signal(signum)
    # The default action of SIGTERM ends the process before raise() returns; this is only reached
    # if the signal was blocked or ignored in between.
    os._exit(128 + signum)


_hooks: _Hooks | None = None
_current: Run | None = None
_ending_run: Run | None = None
_die_after_end = 0  # a SIGTERM that came while a run was ending


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
    _hooks.install_signals()
    _hooks.watch_worker_exit()
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


@contextlib.contextmanager
def ending(run: Run) -> Iterator[None]:
    """Around a run's end: a SIGTERM that comes meanwhile ends the process once the end is done."""
    global _ending_run
    _ending_run = run
    try:
        yield
    finally:
        _ending_run = None
        if _die_after_end:
            die(_die_after_end)


def _after_fork_in_child() -> None:
    # The child has no sender thread; its copy of the run must stay silent and must not end the
    # parent's run at exit. Logging from a worker is dropped with one warning. The child may start
    # a run of its own: the hooks then serve it.
    global _current, _ending_run, _die_after_end
    run = _current
    if run is not None:
        run._disown()
    _current = _ending_run = None
    _die_after_end = 0
    if _hooks is not None:
        _hooks.after_fork()
    _signals.after_fork()
