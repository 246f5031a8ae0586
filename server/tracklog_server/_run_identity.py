"""Run identity's rule: whether a start of a run may use an id the store may already hold.

Each start of a run carries an incarnation: the writer token made at ``init()`` and kept in the
run's spool (``RunStart.writer_token``; the store keeps its sha256 as ``runs.writer_hash``). A resend
from the same spool, or a resume from the same run folder, carries the same token; an unrelated run
that reuses the id, or a resume from another run folder or machine, carries another one. So:

* no run has the id: a new run (``resume="must"`` refuses: there is nothing to resume);
* a deleted run had it: refused, the id stays reserved;
* the run was written with this token: the same incarnation, it continues;
* another incarnation wrote it: refused unless ``resume`` is "allow" or "must", and refused while
  that incarnation is still running (two live writers would interleave their rows). Otherwise the
  new start takes the run over: the store hands it to the new token at its RunStart, and the old
  incarnation's frames are refused from then on (they are kept in its spool and reported).

``check`` is a rule of the domain, beside ``_run_states``: the application asks it before a start
(``application._identity``: ``CheckRunId``, from ``init()`` through the daemon) and the store applies
it again at the RunStart itself (``storage._ingest``), so that a start that could not ask is judged
the same way. Neither layer owns it, so neither imports the other for it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tracklog_server._entities import RunIdentity, RunKey, RunState

RESUMING = frozenset({"allow", "must"})


class Verdict(enum.Enum):
    FREE = "free"
    OWN = "own"
    RESUMABLE = "resumable"
    TAKEN = "taken"
    LIVE = "live"
    DELETED = "deleted"
    MISSING = "missing"


REFUSALS = frozenset({Verdict.TAKEN, Verdict.LIVE, Verdict.DELETED, Verdict.MISSING})


@dataclass(frozen=True, slots=True)
class IdCheck:
    verdict: Verdict
    message: str = ""
    found: RunIdentity | None = None
    project_runs: int = 0


def check(key: RunKey, found: RunIdentity | None, writer_hash: str, resume: str) -> IdCheck:
    """The verdict on starting run ``key`` with a writer whose token hashes to ``writer_hash``."""
    if found is None:
        if resume == "must":
            return IdCheck(Verdict.MISSING, f"resume='must' but the store has no run {key}")
        return IdCheck(Verdict.FREE)
    if found.deleted:
        return IdCheck(
            Verdict.DELETED,
            f"the id {key.id!r} belonged to a deleted run ({key}); it stays reserved in project "
            f"{key.project}: start the run with another id",
            found,
        )
    if writer_hash and found.writer_hash == writer_hash:
        return IdCheck(Verdict.OWN, found=found)
    if resume not in RESUMING:
        why = "resume='never' was passed" if resume == "never" else "no resume= was passed"
        return IdCheck(
            Verdict.TAKEN,
            f"run {key} already exists, started by another process (another run folder or machine), "
            f"and {why}: pass resume='allow' to continue it, or choose another id",
            found,
        )
    if found.state == RunState.RUNNING and not found.finished:
        return IdCheck(
            Verdict.LIVE,
            f"run {key} is still running in another process; two processes writing one run would "
            "interleave their rows: wait until it ends (or stop it), or choose another id",
            found,
        )
    return IdCheck(Verdict.RESUMABLE, found=found)
