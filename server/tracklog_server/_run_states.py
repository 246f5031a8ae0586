"""Run-state transitions: the one place that decides which state a run goes to, and when.

Every state change of a run is one of these, and each is decided here. This is a rule of the domain
(beside ``_entities``), below both layers that use it: the application's use cases and the store,
which applies the transitions inside its transactions, as single statements where replicas race.

* **start** (a RunStart creates the run, or resumes it: a later incarnation or a resend): ``running``,
  its finish forgotten.
* **alive** (a heartbeat, or frames of the run arriving: either proves its writer alive): a
  ``crashed`` run that has no Finish record goes back to ``running``; nothing else changes.
* **silent** (the crash detector: no heartbeat nor frame within the timeout): ``running`` goes to
  ``crashed``.
* **finish** (the run's Finish record): the state it names, or ``finished``/``failed`` by its exit code
  when it names none.
* **stop** is a request, not a transition: the run stays ``running`` until its training process reacts
  (the daemon forwards the stop on its next exchange with the store, the SDK raises
  KeyboardInterrupt in the main thread) and its Finish record makes it ``killed``.
"""

from __future__ import annotations

from tracklog_server._entities import RunKey, RunState
from tracklog_server._errors import RunStateError

START = RunState.RUNNING
# A run the detector called crashed comes back when its writer is heard from again, unless it has a
# Finish record: a finished run is never revived by a late heartbeat.
REVIVABLE = RunState.CRASHED
ALIVE = RunState.RUNNING
# Only a running run can go silent; a finished one is over, a crashed one already is.
SILENT_FROM = RunState.RUNNING
SILENT_TO = RunState.CRASHED
FINISH_STATES = frozenset({RunState.FINISHED, RunState.FAILED, RunState.KILLED, RunState.CRASHED})

# Only a run whose training process is heard from can react to a stop. A crashed run may come back
# (heartbeats revive it), but a stop asked of it now could not be told apart from a lost one.
STOPPABLE = frozenset({RunState.RUNNING})


def alive(state: RunState, finished: bool) -> RunState:
    """The state after the run's writer was heard from (a heartbeat or frames)."""
    return ALIVE if state == REVIVABLE and not finished else state


def finish(named: RunState | None, exit_code: int) -> RunState:
    """The state a Finish record leaves: the one it names, else by its exit code."""
    if named is None:
        return RunState.FINISHED if exit_code == 0 else RunState.FAILED
    if named not in FINISH_STATES:
        raise ValueError(f"a run cannot finish in state {named.value}")
    return named


def check_stop(key: RunKey, state: RunState) -> None:
    """Raises RunStateError unless a run in ``state`` can be stopped."""
    if state not in STOPPABLE:
        raise RunStateError(f"run {key} is {state.value}, not running: only a running run can be stopped")
