"""Run-state transitions asked for through the API: which states allow which request, and what a
refusal says. (Transitions driven by the training process stay in ``_ingest``; heartbeats and the
crash detector in the store; they move here as the application layer grows.)

A stop is a request, not a transition: the run stays ``running`` until its training process reacts
(the daemon forwards the stop on its next heartbeat, the SDK raises KeyboardInterrupt in the main
thread) and its Finish record makes it ``killed``.
"""

from __future__ import annotations

from tracklog_server._entities import RunKey, RunState
from tracklog_server._errors import RunStateError

# Only a run whose training process is heard from can react to a stop. A crashed run may come back
# (heartbeats revive it), but a stop asked of it now could not be told apart from a lost one.
STOPPABLE = frozenset({RunState.RUNNING})


def check_stop(key: RunKey, state: RunState) -> None:
    """Raises RunStateError unless a run in ``state`` can be stopped."""
    if state not in STOPPABLE:
        raise RunStateError(f"run {key} is {state.value}, not running: only a running run can be stopped")
