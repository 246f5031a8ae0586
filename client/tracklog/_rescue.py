"""Rescue files: where the SDK puts frames the daemon did not acknowledge while it holds the spool.

At ``finish()`` the SDK waits about 15 s for the daemon's ack. A daemon that is stopped (SIGSTOP, a
machine under swap, a debugger) still holds the run's spool lock, so the SDK cannot write the frames
into the spool itself. It writes them instead to ``run-<id>.tlog.rescue-<pid>`` beside the spool, in
the spool's frame format (same magic, same frames, their own seqs), and tells the user where they are.
Whoever next owns the spool (the daemon, when the run's stream ends or at its recovery; ``tracklog
sync``) merges them into the spool in seq order, drops seqs the spool already holds, and removes the
file.

Invariants:
- A rescue file is either absent or whole: it is written under a temporary name (``.tmp``), fsynced,
  then renamed, so a merger never reads one that is still being written and a crash mid-write leaves
  only a ``.tmp`` (which the merger ignores and the SDK removes).
- A rescue file is only removed after the spool holds every frame of it durably (appended, fsynced),
  or holds them already. One whose frames cannot join the spool (a gap: frames the spool lacks
  before them) is kept, and the caller is told.

Standard library only: ``import tracklog`` stays light.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tracklog._spool import (
    MAGIC,
    Damage,
    FrameAt,
    SpoolError,
    SpoolWriter,
    first_header_seq,
    frame_bytes,
    history_rows,
    scan,
)

_RESCUE = re.compile(r"\.rescue-(\d+)$")


def rescue_path(spool: str | os.PathLike[str], pid: int | None = None) -> Path:
    """Where process ``pid`` (default: this one) rescues frames of ``spool``."""
    spool = Path(spool)
    return spool.with_name(f"{spool.name}.rescue-{os.getpid() if pid is None else pid}")


def rescue_files(spool: str | os.PathLike[str]) -> list[Path]:
    """The whole rescue files beside ``spool`` (temporary ones are not), by name."""
    spool = Path(spool)
    try:
        names = os.listdir(spool.parent)
    except OSError:
        return []
    prefix = spool.name + ".rescue-"
    return sorted(spool.parent / n for n in names if n.startswith(prefix) and _RESCUE.search(n))


def write_rescue(spool: str | os.PathLike[str], frames: Sequence[tuple[int, bytes]]) -> Path:
    """Writes ``frames`` (consecutive seqs) to this process's rescue file of ``spool``, whole or not
    at all; returns its path. Raises OSError (disk full ...) or SpoolError (an oversized frame)."""
    target = rescue_path(spool)
    tmp = target.with_name(target.name + ".tmp")
    data = b"".join([MAGIC, *(frame_bytes(seq, payload, history_rows(payload)) for seq, payload in frames)])
    # 0600 like the spool: the frames may hold the run's writer token.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        done = 0
        while done < len(data):
            done += os.write(fd, data[done:])
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    return target


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # the rename stands in the page cache; only a machine crash could undo it
    finally:
        os.close(fd)


def read_rescue(path: str | os.PathLike[str]) -> tuple[list[FrameAt], list[Damage]]:
    """The good frames of a rescue file and the damage met. Its first frame's seq is read from the
    first header (a rescue file starts wherever the daemon's acks stopped)."""
    after = max(0, first_header_seq(path) - 1)  # 0 (scan from seq 1) if that header is damaged
    found: list[FrameAt] = []
    damage: list[Damage] = []
    with scan(path, after_seq=after) as items:
        for item in items:
            if isinstance(item, FrameAt):
                found.append(item)
            elif item.bytes:  # not the seqs below the first frame (a header damaged there)
                damage.append(item)
    return found, damage


@dataclass(frozen=True, slots=True)
class Merged:
    """What merging the rescue files of one spool did."""

    frames: int = 0  # appended to the spool
    files: int = 0  # rescue files merged and removed
    last_payload: bytes = b""  # the spool's last frame, when the merge appended it


def merge_rescues(writer: SpoolWriter, report: Callable[[str], None]) -> Merged:
    """Appends the frames of every rescue file beside ``writer``'s spool that the spool does not hold
    yet, in seq order, fsyncs, and removes the files. The caller owns ``writer`` (holds its lock).
    Problems (a damaged or unreadable rescue file, a gap, a disk that refuses the write) go to
    ``report`` and leave the file in place for a later try; never raises."""
    frames = appended = 0
    last = b""
    for path in sorted(rescue_files(writer.path), key=first_header_seq):
        try:
            found, damage = read_rescue(path)
        except (OSError, SpoolError) as exc:
            report(f"cannot read the rescued frames in {path}: {exc}; the file is kept")
            continue
        for d in damage:
            report(f"rescued frames in {path} are damaged: {d.describe()}")
        new = [f for f in found if f.seq > writer.last_seq]
        if new and new[0].seq != writer.last_seq + 1:
            report(
                f"the rescued frames in {path} start at frame {new[0].seq} but {writer.path.name} ends at "
                f"frame {writer.last_seq}; they cannot join it and the file is kept"
            )
            continue
        try:
            if new:
                writer.append((f.seq, f.payload, f.rows) for f in new)
                writer.sync()
                frames += len(new)
                last = new[-1].payload
            if not damage:
                path.unlink(missing_ok=True)
                appended += 1
        except Exception as exc:  # e.g. a full disk: the file stays for a later try
            report(f"cannot merge the rescued frames in {path} into {writer.path.name}: {exc}")
    return Merged(frames, appended, last)
