"""``tracklog sync`` as wandb users call it: with no argument, every run under ``./tracklog`` that
the store does not hold whole yet; ``--id`` picks runs by id, ``--dry-run`` only lists them, and
``-p``/``-e`` send them under another project or entity."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tracklog import _refs, _spool
from tracklog._errors import UsageError
from tracklog.v1 import records_pb2


def add_arguments(sync: argparse.ArgumentParser) -> None:
    sync.add_argument("--id", dest="ids", action="append", metavar="RUN_ID", help="only the run with this id")
    sync.add_argument("--dry-run", action="store_true", help="list what would be synced, send nothing")
    sync.add_argument("-p", "--project", help="sync under this project instead of the run's own")
    sync.add_argument("-e", "--entity", help="sync under this entity instead of the run's own")


def root() -> Path:
    return Path(os.environ.get("TRACKLOG_DIR") or os.getcwd()) / "tracklog"


def _last_seq(spool: Path) -> int:
    return max((frame.seq for frame in _spool.frames(spool)), default=0)


def _is_own(spool: Path) -> bool:
    return spool.name.endswith(".daemon.tlog")


def unsynced(spool: Path) -> int:
    """How many frames of ``spool`` (and of the daemon's spool beside it) the store lacks."""
    missing = max(0, _last_seq(spool) - _spool.read_synced(spool))
    own = spool.with_name(spool.name.removesuffix(".tlog") + ".daemon.tlog")
    if own.exists():
        missing += max(0, _last_seq(own) - _spool.read_synced(own))
    return missing


def every_unsynced(ids: list[str] | None) -> list[Path]:
    """The training process's spool of each run under ``./tracklog`` with frames the store lacks,
    oldest run first; a run whose spool a live process still writes (the daemon syncs it) is left."""
    found: list[Path] = []
    for spool in sorted(root().glob("*run-*/run-*.tlog")):
        if _is_own(spool) or (ids and not any(spool.parent.name.endswith(f"-{i}") for i in ids)):
            continue
        if _spool.lock_holder(spool) or not unsynced(spool):
            continue
        found.append(spool)
    return found


def select(args: argparse.Namespace) -> list[Path] | None:
    """The spools ``tracklog sync`` with no PATH and no --all sends (None: PATHs or --all decide)."""
    if args.paths or args.all:
        return None
    return every_unsynced(args.ids)


def keep_ids(spools: list[Path], ids: list[str] | None) -> list[Path]:
    if not ids:
        return spools
    return [s for s in spools if any(s.parent.name.endswith(f"-{i}") for i in ids)]


def dry_run(spools: list[Path]) -> int:
    if not spools:
        print("nothing to sync")
    for spool in spools:
        print(f"would sync {spool.parent.name} ({unsynced(spool)} frames not in the store yet)")
    return 0


def ref_for(spool: Path, args: argparse.Namespace) -> records_pb2.RunRef | None:
    """The run ``spool`` is sent as: its own (None), or under ``-p``/``-e`` when given."""
    if not (args.project or args.entity):
        return None
    start = None
    for frame in _spool.frames(spool):
        record = records_pb2.Record.FromString(frame.payload)
        if record.WhichOneof("kind") == "start":
            start = record.start
            break
    if start is None:
        raise UsageError(f"{spool} holds no run start; it cannot be synced under another project")
    entity = args.entity or start.ref.entity
    project = args.project or start.ref.project
    try:
        _refs.RunPath(entity, project, start.ref.id)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return records_pb2.RunRef(entity=entity, project=project, id=start.ref.id)


def say_where(ref: records_pb2.RunRef | None, label: str) -> None:
    if ref is not None:
        print(f"{label}: syncing as {ref.entity}/{ref.project}/{ref.id}", file=sys.stderr)
