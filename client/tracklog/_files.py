"""Files saved with a run: ``run.save(path, policy)`` and the files the run writes itself.

Policies (as wandb's): ``now`` sends the file at once; ``end`` when the run finishes; ``live`` now,
again whenever it changes (checked every few seconds), and at the end. Each send is a new version of
the name, as FileChunk records of at most ``CHUNK`` bytes, so a file travels with the run's other
records: durable in the spool, synced in order, resent after a failure.

Runs on the sender thread only: reading files never happens on the training loop's thread.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tracklog.v1 import records_pb2

CHUNK = 1024 * 1024
MAX_FILE = 256 * 1024 * 1024
POLICIES = ("now", "end", "live")
LIVE_INTERVAL = 5.0  # seconds between checks of live files


@dataclass(frozen=True, slots=True)
class SaveRequest:
    """A queued ``run.save`` call (resolved to concrete files on the sender thread)."""

    pattern: str
    base: str
    policy: str


def resolve(request: SaveRequest) -> list[tuple[str, Path]]:
    """(name in the run, path on disk) for every file the request's pattern matches now."""
    out: list[tuple[str, Path]] = []
    for match in sorted(glob.glob(request.pattern, recursive=True)):
        path = Path(match)
        if not path.is_file():
            continue
        try:
            name = path.resolve().relative_to(Path(request.base).resolve()).as_posix()
        except ValueError:
            name = path.name
        out.append((name, path))
    return out


@dataclass(frozen=True, slots=True)
class FileSend:
    """One version of a file to send. Its chunks are read from disk as the sender frames them
    (``chunks``), never all at once: what the sender holds stays under its memory cap."""

    name: str
    version: int
    path: Path

    def chunks(self) -> Iterator[records_pb2.Record]:
        return chunks(self.name, self.version, self.path)


def chunks(name: str, version: int, path: Path) -> Iterator[records_pb2.Record]:
    """The FileChunk records of one version of a file (at least one, even for an empty file).

    Lazy: the file is opened at the first chunk and read a chunk at a time. Raises OSError when it
    cannot be read, ValueError when it is over the size limit.
    """
    size = path.stat().st_size
    if size > MAX_FILE:
        raise ValueError(f"{path} is {size} bytes; files saved with a run are limited to {MAX_FILE}")
    import hashlib  # on the sender thread, when a file is sent; ``import tracklog`` need not load it

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        offset = 0
        while True:
            data = f.read(CHUNK)
            digest.update(data)
            last = len(data) < CHUNK or offset + len(data) >= size
            chunk = records_pb2.FileChunk(
                name=name, version=version, offset=offset, data=data, last=last, size=size
            )
            if last:
                chunk.sha256 = digest.hexdigest()
            yield records_pb2.Record(file=chunk)
            offset += len(data)
            if last:
                return


class FileTracker:
    """Versions per name and the live/end files still to send."""

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._live: dict[str, tuple[Path, float]] = {}  # name -> (path, mtime sent)
        self._end: dict[str, Path] = {}
        self._live_requests: list[SaveRequest] = []
        self._end_requests: list[SaveRequest] = []

    def next_version(self, name: str) -> int:
        version = self._versions.get(name, 0) + 1
        self._versions[name] = version
        return version

    def request(self, request: SaveRequest) -> list[tuple[str, Path]]:
        """Registers a save; returns the files to send now."""
        found = resolve(request)
        if request.policy == "end":
            self._end_requests.append(request)
            return []
        if request.policy == "live":
            self._live_requests.append(request)
            for name, path in found:
                self._live[name] = (path, _mtime(path))
        return found

    def changed(self) -> list[tuple[str, Path]]:
        """Live files that changed (or appeared) since they were last sent."""
        for request in self._live_requests:
            for name, path in resolve(request):
                self._live.setdefault(name, (path, -1.0))
        out = []
        for name, (path, sent) in list(self._live.items()):
            mtime = _mtime(path)
            if mtime >= 0 and mtime != sent:
                self._live[name] = (path, mtime)
                out.append((name, path))
        return out

    def at_end(self) -> list[tuple[str, Path]]:
        """Files to send as the run ends: 'end' files, and live files that changed."""
        found = dict(self.changed())
        for request in self._end_requests:
            found.update(resolve(request))
        return sorted(found.items())


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return -1.0
