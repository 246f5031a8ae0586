"""Read your own writes: before ``Api.run`` reads a run that just ended on this machine, it lets the
local daemon finish handing that run to the store.

A run's last frames (and the daemon's own records of it: metadata, the last system metrics) reach
the store a moment after ``finish()`` returns, because ``finish()`` waits only until they are durable
on local disk. The daemon's status says, per run it holds, whether the run has ended with something
still on its way (``RunStatus.settling``); this waits, bounded, until that clears. It never starts a
daemon, and never waits for a run still being written (it would not end by waiting) or one headed
for another store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc

from tracklog import _home, _launch
from tracklog._refs import RunPath
from tracklog.v1 import daemon_pb2, daemon_pb2_grpc

POLL = 0.05  # seconds between two questions to the daemon (it has no "synced" event to wait on)


def settling(home: Path, ref: RunPath, server: str, timeout: float = 1.0) -> bool | None:
    """Whether the daemon of ``home`` still sends the ended run ``ref`` to ``server``; None when no
    daemon answers."""
    if not _launch.answers(home):
        return None
    with _launch.channel(_home.daemon_target(home)) as channel:
        try:
            status = daemon_pb2_grpc.DaemonStub(channel).Status(daemon_pb2.StatusRequest(), timeout=timeout)
        except grpc.RpcError:
            return None
    for run in status.runs:
        r = run.ref
        if (r.entity, r.project, r.id) == (ref.entity, ref.project, ref.id):
            return run.settling and run.server == server
    return False


def await_settled(
    home: Path,
    ref: RunPath,
    server: str,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Waits until the daemon no longer holds ``ref`` unsent, at most ``timeout`` seconds. Returns
    False only when the run was still on its way at the deadline."""
    deadline = clock() + timeout
    while settling(home, ref, server):
        if clock() >= deadline:
            return False
        sleep(POLL)
    return True
