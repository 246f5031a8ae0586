"""``$TRACKLOG_HOME/pending/``: one small JSON file per run the daemon still has to sync.

An entry is written (atomically, fsynced) when a run attaches and removed once its Finish is synced
and the daemon's own spool of the run (``run-<id>.daemon.tlog`` beside ``spool``, ``_own``) is too,
so after a crash or a restart the next daemon knows every spool that is not yet on its server.
Invariant: an entry exists for every spool the daemon has acked frames of, or written frames of its
own to, and not fully synced.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from tracklog._refs import RunPath
from tracklog.v1 import records_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PendingEntry:
    ref: str  # entity/project/id
    run_dir: str
    spool: str
    server: str  # store host:port; "" for the daemon's local server (its port changes per start)
    pid: int = 0  # the training process last attached; lets a new daemon finish a vanished run

    def run_ref(self) -> records_pb2.RunRef:
        path = RunPath.parse(self.ref)
        return records_pb2.RunRef(entity=path.entity, project=path.project, id=path.id)


def entry_name(ref: str) -> str:
    # Ref parts never contain '+' or '/', so this name is unique per run and safe as a file name.
    return ref.replace("/", "+") + ".json"


class PendingDir:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, entry: PendingEntry) -> None:
        """Writes ``entry`` durably (write, fsync, rename). Raises OSError."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.directory / entry_name(entry.ref)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(entry), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    def remove(self, ref: str) -> None:
        (self.directory / entry_name(ref)).unlink(missing_ok=True)

    def load(self) -> list[PendingEntry]:
        """Every readable entry. Unreadable ones are logged and left in place for a human."""
        entries: list[PendingEntry] = []
        if not self.directory.is_dir():
            return entries
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                entry = PendingEntry(
                    ref=str(data["ref"]),
                    run_dir=str(data["run_dir"]),
                    spool=str(data["spool"]),
                    server=str(data.get("server", "")),
                    pid=int(data.get("pid", 0)),
                )
                RunPath.parse(entry.ref)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable pending entry %s: %s", path, exc)
                continue
            entries.append(entry)
        return entries
