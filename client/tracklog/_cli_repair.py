"""What ``tracklog sync`` does to a spool before it sends it: take in frames rescued beside it, and
record the loss of an end cut short whose writer is gone.

A training process whose daemon did not acknowledge its last frames at ``finish()`` (a stalled
daemon that still held the spool) left them in rescue files beside the spool (``_rescue``). When no
daemon holds the spool any more, ``tracklog sync`` becomes its writer for a moment, adds those frames
to it in seq order and removes the files, so that the push below sends them with the rest.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from tracklog import _rescue, _spool, _torn
from tracklog.v1 import records_pb2


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


def seal_abandoned_end(spool: Path, label: str) -> int:
    """When ``spool`` ends in bytes that are not a whole frame and its writer is gone for good (no
    process holds it; the training process that started the run is not running here), records the
    loss in the spool itself (``_torn``) so that the push sends it to the run. Returns 1 when it
    did (the run lost frames), else 0. A spool a live writer may still complete is left alone."""
    try:
        with _spool.scan(spool) as found:
            for _ in found:
                pass
    except (OSError, _spool.SpoolError):
        return 0  # the caller reads it again and reports why it cannot
    if not found.tail_bytes or found.good_end < len(_spool.MAGIC) or _writer_alive(spool):
        return 0
    try:
        writer = _spool.SpoolWriter(spool)
    except (OSError, _spool.SpoolError):
        return 0  # a writer holds it (it decides), or it cannot be opened: reported by the push
    try:
        lost = _torn.seal_torn_end(writer)
    except OSError as exc:
        print(f"{label}: cannot record the loss of the end of {spool.name}: {exc}", file=sys.stderr)
        return 1
    finally:
        writer.close()
    if lost is None:
        return 0
    print(f"{label}: {_torn.describe(lost)}; the store records the loss on the run", file=sys.stderr)
    return 1


def _writer_alive(spool: Path) -> bool:
    """Whether the training process that started the run (its RunStart's pid, on this host) still
    runs: it may still write the spool (offline) or send its frames again (online)."""
    start = None
    for frame in _spool.frames(spool):
        record = records_pb2.Record.FromString(frame.payload)
        if record.WhichOneof("kind") == "start":
            start = record.start  # the last start: a resumed run's latest process
    if start is None or not start.pid or start.host != socket.gethostname():
        return False
    try:
        os.kill(start.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process of another user has the pid: not ours, but cannot tell
    return True


LOST_TAG = bytes([(12 << 3) | 2])  # a serialized Record holding FramesLost starts with this tag


def report_recorded(label: str, payloads: list[bytes]) -> int:
    """Prints the losses a spool records in frames of its own (``FramesLost`` in a cut end's place),
    for a spool synced before: 1 if there are any, else 0."""
    for payload in payloads:
        lost = records_pb2.Record.FromString(payload).lost
        print(f"{label}: {_torn.describe(lost)} (recorded on the run)", file=sys.stderr)
    return 1 if payloads else 0
