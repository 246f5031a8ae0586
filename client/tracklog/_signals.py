"""A backstop for SIGTERM when the main thread cannot run Python's handler.

Python runs a signal handler on the main thread, between bytecodes. If the kernel hands the signal
to another thread (tracklog's sender, gRPC's threads) while the main thread waits in C for
something the signal does not wake (a multiprocessing lock, a long sleep), the handler waits with
it, possibly for ever, where the default action would have ended the process at once.

Python's C-level handler also writes the signal's number to the "wakeup fd", from whatever thread
received it. A watcher thread reads it: when the watched signal came and the Python handler has not
started within ``GRACE`` seconds, the watcher calls ``on_blocked`` itself (which ends the run and
the process). Only used when no one else owns the wakeup fd (an asyncio loop with signal handlers
does); one watcher per process, none inherited by a forked child.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

GRACE = 0.5  # seconds the main thread has to start the Python handler itself


class _Watcher:
    def __init__(self, signum: int, on_blocked: Callable[[int], None]) -> None:
        self.pid = os.getpid()
        self.signum = signum
        self.on_blocked = on_blocked
        # The Python handler started on the main thread: a plain attribute, as the handler may run
        # inside itself (see _lifecycle) and must take no lock.
        self.handled = False
        self.reader, self.writer = socket.socketpair()
        self.writer.setblocking(False)  # set_wakeup_fd requires it; a full buffer drops bytes
        self.thread = threading.Thread(target=self._run, name="tracklog-signals", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                data = self.reader.recv(64)
            except OSError:
                return
            if not data:
                return
            if self.signum not in data or os.getpid() != self.pid or self._handled_within(GRACE):
                continue
            # The main thread did not start the handler: the kernel gave the signal to another
            # thread. Hand it to the main thread, which interrupts what it waits in ...
            with contextlib.suppress(OSError, ValueError):
                main = threading.main_thread().ident
                if main is not None:
                    signal.pthread_kill(main, self.signum)
            if not self._handled_within(GRACE):  # ... unless it waits in C that retries regardless
                self.on_blocked(self.signum)

    def _handled_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self.handled and time.monotonic() < deadline:
            time.sleep(0.01)  # polls a flag the signal handler sets (it cannot use an Event)
        return self.handled

    def close(self) -> None:
        for sock in (self.reader, self.writer):
            with contextlib.suppress(OSError):
                sock.close()


_watcher: _Watcher | None = None


def watch(signum: int, on_blocked: Callable[[int], None]) -> bool:
    """Starts the watcher (main thread only); False if the wakeup fd belongs to someone else."""
    global _watcher
    if _watcher is not None and _watcher.pid == os.getpid():
        return True
    watcher = _Watcher(signum, on_blocked)
    try:
        previous = signal.set_wakeup_fd(watcher.writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        watcher.close()
        return False
    if previous != -1:  # an event loop's: give it back and go without the backstop
        signal.set_wakeup_fd(previous)
        watcher.close()
        return False
    _watcher = watcher
    watcher.thread.start()
    return True


def handled(signum: int) -> None:
    """The Python handler of ``signum`` started: the watcher leaves the signal to it."""
    watcher = _watcher
    if watcher is not None and watcher.signum == signum:
        watcher.handled = True


def unwatch() -> None:
    """Hands the wakeup fd back (the process is about to die by its signal's default action)."""
    global _watcher
    watcher, _watcher = _watcher, None
    if watcher is not None and watcher.pid == os.getpid():
        with contextlib.suppress(ValueError):  # off the main thread: the process dies regardless
            signal.set_wakeup_fd(-1)


def default_action(signum: int) -> None:
    """Puts back the default action of ``signum``, from any thread (Python's ``signal.signal``
    works only on the main thread, which may be the one that is blocked)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signum, signal.SIG_DFL)
        return
    import ctypes  # only here: a process dying off its main thread

    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.signal(signum, 0)  # SIG_DFL


def after_fork() -> None:
    """In a forked child: the watcher thread is gone and its socket is the parent's."""
    global _watcher
    watcher, _watcher = _watcher, None
    if watcher is None:
        return
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    watcher.close()


def interrupt_main_for_stop() -> str:
    """Ends the training script's main thread for a stop asked through the API; returns how.

    As Ctrl+C does (KeyboardInterrupt in the main thread, so ``with run:`` and ``finally`` blocks
    run) when Python handles SIGINT. A script started in the background by a shell (``cmd &`` in a
    script, ``nohup``) inherits SIGINT ignored, and Python then installs no handler:
    ``interrupt_main()`` would do nothing and the stop would be lost. There it ends as SIGTERM does
    (tracklog's handler ends the run killed, then the process), through the script's own SIGTERM
    handler if it has one."""
    if callable(signal.getsignal(signal.SIGINT)):
        _thread.interrupt_main()
        return "SIGINT"
    if callable(signal.getsignal(signal.SIGTERM)):
        _thread.interrupt_main(signal.SIGTERM)  # the handler runs on the main thread, as for a kill
    else:
        os.kill(os.getpid(), signal.SIGTERM)  # no Python handler: the default action ends it
    return "SIGTERM"
