"""Runs the store refused and this machine's daemon keeps in their spools: listed by ``tracklog runs``
and ``tracklog daemon status``, so a refusal found after ``init()`` (the store could not be asked
then) is never silent. Such a run's frames stay in its spool; ``tracklog sync`` sends them again
once the cause is gone (for a taken id: run it again with another id, or resume=)."""

from __future__ import annotations

import sys
from pathlib import Path


def print_kept_runs(home: Path) -> int:
    """Prints one line per run the local daemon holds refused; returns how many. Never fails: a
    daemon that does not answer has nothing to report here."""
    import tracklogd

    status = tracklogd.status(home)
    if status is None:
        return 0
    kept = [run for run in status.runs if run.refused]
    for run in kept:
        ref = run.ref
        print(
            f"{ref.entity}/{ref.project}/{ref.id}: kept in {run.run_dir}, not synced: the store "
            f"refused it: {run.refused}",
            file=sys.stderr,
        )
    return len(kept)
