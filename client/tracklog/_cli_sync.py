"""What ``tracklog sync`` does to a spool before it sends it: take in frames rescued beside it.

A training process whose daemon did not acknowledge its last frames at ``finish()`` (a stalled
daemon that still held the spool) left them in rescue files beside the spool (``_rescue``). When no
daemon holds the spool any more, ``tracklog sync`` becomes its writer for a moment, adds those frames
to it in seq order and removes the files, so that the push below sends them with the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tracklog import _rescue, _spool


def take_rescued(spool: Path, label: str) -> int:
    """Merges the rescue files beside ``spool`` into it; prints what it did. Returns 1 when rescued
    frames could not be merged (they are kept and named), else 0. A spool a daemon still holds is left
    to that daemon, which merges them itself."""
    files = _rescue.rescue_files(spool)
    if not files:
        return 0
    try:
        writer = _spool.SpoolWriter(spool)
    except _spool.SpoolError as exc:
        print(f"{label}: {len(files)} rescue file(s) beside {spool.name} are left to its writer ({exc})")
        return 0
    except OSError as exc:
        print(f"{label}: cannot open {spool} to add the frames rescued beside it: {exc}", file=sys.stderr)
        return 1
    problems: list[str] = []
    try:
        merged = _rescue.merge_rescues(writer, problems.append)
    finally:
        try:
            writer.close()
        except OSError as exc:
            problems.append(f"cannot close {spool}: {exc}")
    for problem in problems:
        print(f"{label}: {problem}", file=sys.stderr)
    if merged.frames:
        print(f"{label}: added {merged.frames} frames rescued by the training process to {spool.name}")
    return 1 if problems else 0
