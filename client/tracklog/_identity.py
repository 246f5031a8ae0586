"""Asking the store, at ``init()``, whether a run may start with its id (run identity).

A run started with an id of the user's choosing (or with ``resume=``) asks its store, through the
daemon (``Daemon.ProbeRun`` -> ``Store.CheckRunId``), bounded in time: an id that belonged to a
deleted run, or that another process's run holds (without ``resume=``, or while that run is still
running), is refused here with the store's reason, before anything is written. With ``resume=`` a run
the store holds continues there, from whatever run folder or machine: its steps go on after the
store's last step, its config and name carry on.

A store that cannot be asked in time is no refusal: the run starts, keeps its frames in its spool,
and the daemon reports a refusal that comes later (``daemon.log``, ``tracklog runs``); nothing is
dropped. Generated ids are random (8 characters of [a-z0-9]) and are not asked about: ``init()``
stays fast.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tracklog import _launch
from tracklog._errors import CommError, UsageError
from tracklog.v1 import daemon_pb2, daemon_pb2_grpc, records_pb2, store_pb2

PROBE_TIMEOUT = 3.0  # how long init() waits for the store's answer before it goes on without one

_REFUSALS = frozenset(
    {store_pb2.RUN_ID_TAKEN, store_pb2.RUN_ID_LIVE, store_pb2.RUN_ID_DELETED, store_pb2.RUN_ID_MISSING}
)


@dataclass(frozen=True)
class StoredRun:
    """What the store holds of the run, as ``init()`` continues it (``exists`` False: a new run)."""

    exists: bool
    takes_over: bool  # another incarnation wrote it: this start takes it over (resume)
    next_step: int = 0
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    project_runs: int = 0


def should_probe(id_given: bool, resume: str) -> bool:
    """Only ids a user chose can be taken; a generated one is new with certainty enough."""
    return id_given or bool(resume)


def probe(
    home: Path,
    ref: records_pb2.RunRef,
    server: str,
    writer_token: str,
    resume: str,
    *,
    start_timeout: float,
    timeout: float = PROBE_TIMEOUT,
) -> StoredRun | None:
    """The store's view of the run, or None when it could not be asked in time. Raises UsageError
    with the store's reason when it refuses the id."""
    try:
        target = _launch.ensure_daemon(home, timeout=start_timeout)
    except CommError:
        return None
    request = daemon_pb2.ProbeRunRequest(
        ref=ref, server=server, writer_token=writer_token, resume=resume, timeout=timeout, pid=os.getpid()
    )
    with _launch.channel(target) as channel:
        try:
            response: daemon_pb2.ProbeRunResponse = daemon_pb2_grpc.DaemonStub(channel).ProbeRun(
                request, timeout=timeout + 1.0
            )
        except grpc.RpcError:  # an older daemon (UNIMPLEMENTED), or none in time
            return None
    if not response.reached:
        return None
    answer = response.answer
    if answer.verdict in _REFUSALS:
        raise UsageError(answer.message or f"the store refused run id {ref.id!r}")
    exists = answer.verdict in (store_pb2.RUN_ID_OWN, store_pb2.RUN_ID_RESUMABLE)
    try:
        config = json.loads(answer.config_json) if answer.config_json else {}
    except ValueError:
        config = {}
    return StoredRun(
        exists=exists,
        takes_over=answer.verdict == store_pb2.RUN_ID_RESUMABLE,
        next_step=answer.last_step + 1 if exists else 0,
        name=answer.name if exists else "",
        config=config if exists and isinstance(config, dict) else {},
        project_runs=answer.project_runs,
    )
