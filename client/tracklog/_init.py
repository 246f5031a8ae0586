"""``tracklog.init()``: settings, the run directory, the first record, the sender, the opening lines."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracklog import _history, _identity, _lifecycle, _names, _settings, _spool, _tokens
from tracklog._capture import Capture, OutputChunk
from tracklog._config import Config
from tracklog._console import Console
from tracklog._errors import UsageError
from tracklog._run import Run
from tracklog._sender import MAX_BUFFER_BYTES, Sender
from tracklog._terminal import Printer
from tracklog._transport import DaemonTransport, SpoolTransport, Transport
from tracklog.v1 import daemon_pb2, records_pb2

if TYPE_CHECKING:
    import argparse

# Spawning a daemon costs a Python start-up plus imports; init() waits this long before going on
# without it (the sender keeps retrying in the background and nothing is lost).
DAEMON_START_TIMEOUT = 5.0


def _local_runs(base: Path) -> list[str]:
    """The run directories under ``base`` (one listing, shared by id checks and name numbering)."""
    try:
        return sorted(name for name in os.listdir(base) if "run-" in name)
    except OSError:
        return []


def _run_dir(
    base: Path, runs: list[str], run_id: str, offline: bool, resume: str, start: float, store_may_have: bool
) -> Path:
    existing = [base / name for name in runs if name.endswith(f"-{run_id}")]
    if existing and not resume:
        # A second run under the same id would collide with the first one's sequence numbers.
        raise UsageError(
            f"a run with id {run_id!r} already exists in {existing[-1]}; pass resume='allow' to "
            "continue it, or choose another id"
        )
    if existing and resume == "never":
        raise UsageError(f"resume='never' but run {run_id!r} already exists in {existing[-1]}")
    if existing:
        return existing[-1]
    if resume == "must" and not store_may_have:  # else the store is asked (_identity)
        raise UsageError(f"resume='must' but no run directory for id {run_id!r} under {base}")
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(start))
    return base / f"{'offline-' if offline else ''}run-{stamp}-{run_id}"


@dataclass(frozen=True)
class _ResumePoint:
    """Where a resumed run continues: its last frame, its next step, its config so far and its
    writer token (the store accepts the run's frames only with the token it was created with)."""

    last_seq: int = 0
    next_step: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    writer_token: str = ""


def _resume_point(spool: Path) -> _ResumePoint:
    last_seq, next_step, config, writer_token = 0, 0, dict[str, Any](), ""
    if not spool.exists():
        return _ResumePoint()
    for frame in _spool.frames(spool):  # damage is the sync's to report
        last_seq = frame.seq
        record = records_pb2.Record.FromString(frame.payload)
        kind = record.WhichOneof("kind")
        if kind == "history":
            steps = _history.unpack_int64(records_pb2.HistoryBatch.FromString(record.history).steps)
            if steps:
                next_step = steps[-1] + 1
        elif kind == "start":
            config = json.loads(record.start.config_json or "{}")
            writer_token = writer_token or record.start.writer_token  # the first start's
        elif kind == "config":
            config.update(json.loads(record.config.items_json))
    return _ResumePoint(last_seq, next_step, config, writer_token)


def _spool_fallback(spool: Path) -> Callable[[list[tuple[int, bytes]]], None]:
    def write(frames: list[tuple[int, bytes]]) -> None:
        writer = _spool.SpoolWriter(spool)
        try:
            writer.append(frames)
        finally:
            writer.close()

    return write


def init(
    project: str | None = None,
    entity: str | None = None,
    name: str | None = None,
    id: str | None = None,
    config: Mapping[str, Any] | argparse.Namespace | None = None,
    tags: Sequence[str] | None = None,
    notes: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    mode: str | None = None,
    dir: str | os.PathLike[str] | None = None,
    resume: str | bool | None = None,
) -> Run:
    """Starts a run and returns it; also available as ``tracklog.run`` until it finishes."""
    settings = _settings.resolve(project=project, entity=entity, run_id=id, mode=mode, dir=dir, resume=resume)
    max_buffer = _settings.max_buffer_bytes(os.environ, MAX_BUFFER_BYTES)
    printer = Printer(quiet=os.environ.get("TRACKLOG_SILENT", "").lower() in ("1", "true"))
    cfg = Config()
    cfg.update(config)  # validates before anything is created
    config_items = cfg.as_dict()
    tag_tuple = _settings.validate_tags(tags) if tags is not None else ()
    notes = _settings.validate_text("notes", notes, _settings.MAX_NOTES) if notes is not None else ""
    group = _settings.validate_text("group", group, 128) if group is not None else ""
    job_type = _settings.validate_text("job_type", job_type, 64) if job_type is not None else ""

    previous = _lifecycle.current()
    if previous is not None:  # one current run per process, as wandb: the previous one ends
        previous.finish()

    start = time.time()
    offline = settings.mode == "offline"
    base = settings.root_dir / "tracklog"
    runs = _local_runs(base)
    online = settings.mode == "online"  # only then is the store asked about the id
    run_dir = _run_dir(base, runs, settings.run_id, offline, settings.resume, start, online)
    spool = run_dir / f"run-{settings.run_id}.tlog"
    resumed = _resume_point(spool) if settings.resume else _ResumePoint()
    writer_token = resumed.writer_token or _tokens.new_token()
    stored = _ask_store(settings, writer_token, run_dir, spool) if online else None
    name, generated_name = _name_for(name, stored, len(runs))

    if settings.mode == "disabled":
        run = Run(
            settings, name=name, notes=notes, tags=tag_tuple, group=group, job_type=job_type,
            config=cfg, run_dir=run_dir, sender=None, printer=printer, start_time=start,
        )  # fmt: skip
        return run

    run_dir.mkdir(parents=True, exist_ok=True)
    if so_far := {**(stored.config if stored is not None else {}), **resumed.config}:
        cfg = Config()  # the config so far, updated by what this init() passes
        cfg.update({**so_far, **config_items})
    # A run resumed from another run folder continues after the steps the store holds.
    next_step = max(resumed.next_step, stored.next_step if stored is not None else 0)

    transport: Transport
    if offline:
        transport = SpoolTransport(spool)
    else:
        ref = records_pb2.RunRef(entity=settings.entity, project=settings.project, id=settings.run_id)
        attach = daemon_pb2.Attach(ref=ref, run_dir=str(run_dir), pid=os.getpid(), server=settings.server)
        transport = DaemonTransport(settings.home, attach, start_timeout=DAEMON_START_TIMEOUT)
    sender = Sender(
        transport,
        warn=printer.warn,
        fallback=None if offline else _spool_fallback(spool),
        last_seq=resumed.last_seq,
        capture=Capture(run_dir, warn=printer.warn, start_wall=start, config=cfg.as_dict),
        max_buffer_bytes=max_buffer,
    )
    run = Run(
        settings, name=name, notes=notes, tags=tag_tuple, group=group, job_type=job_type,
        config=cfg, run_dir=run_dir, sender=sender, printer=printer, start_time=start,
        step=next_step,
    )  # fmt: skip
    start_record = records_pb2.RunStart(
        ref=records_pb2.RunRef(entity=settings.entity, project=settings.project, id=settings.run_id),
        name=name,
        notes=notes,
        tags=tag_tuple,
        group=group,
        job_type=job_type,
        config_json=_history.dumps(cfg.as_dict()),
        start_time=start,
        pid=os.getpid(),
        host=socket.gethostname(),
        run_dir=str(run_dir),
        offline=offline,
        resume=settings.resume,
        # Random per run, kept in the run's first frame (its spool is 0600) so that a resume from
        # this run directory, the daemon's sync and `tracklog sync` all send the same one.
        writer_token=writer_token,
        name_generated=generated_name,
    )
    sender.queue.append(records_pb2.Record(start=start_record))
    connected = sender.connect_now(timeout=DAEMON_START_TIMEOUT)
    sender.start()
    if not connected and not offline:
        printer.warn("the tracklog daemon is not answering yet; the run goes on and its data is kept")
    _lifecycle.adopt(run)
    printer.opening(run)
    run._console = _start_console(sender)
    return run


def _name_for(name: str | None, stored: _identity.StoredRun | None, local_runs: int) -> tuple[str, bool]:
    """The run's name and whether it was generated: the given one; else the stored run's when this
    start continues one; else generated, numbered past the runs of the project that the store holds
    (when it was asked) and those of this folder (the store keeps generated names unique)."""
    if name is not None:
        return _settings.validate_name(name), False
    if stored is not None and stored.exists and stored.name:
        return stored.name, False
    return _names.generate(max(local_runs, stored.project_runs if stored is not None else 0) + 1), True


def _ask_store(
    settings: _settings.Settings, writer_token: str, run_dir: Path, spool: Path
) -> _identity.StoredRun | None:
    """The store's view of a run whose id the user chose (None: not asked, or no answer in time).
    Raises UsageError when the store refuses the id, or when resume='must' finds no run anywhere."""
    stored = None
    if _identity.should_probe(settings.id_given, settings.resume):
        ref = records_pb2.RunRef(entity=settings.entity, project=settings.project, id=settings.run_id)
        stored = _identity.probe(
            settings.home, ref, settings.server, writer_token, settings.resume,
            start_timeout=DAEMON_START_TIMEOUT,
        )  # fmt: skip
    if settings.resume == "must" and not spool.exists() and (stored is None or not stored.exists):
        where = "the store could not be asked" if stored is None else "the store has no such run"
        raise UsageError(
            f"resume='must' but there is no run {settings.run_id!r}: no run directory under "
            f"{run_dir.parent}, and {where}"
        )
    return stored


def _start_console(sender: Sender) -> Console | None:
    """Console capture into the run's queue, unless TRACKLOG_CONSOLE turns it off."""
    if os.environ.get("TRACKLOG_CONSOLE", "on").lower() in ("off", "false", "0"):
        return None
    queue = sender.queue
    console = Console(lambda lines: queue.append(OutputChunk(lines)))
    return console if console.start() else None


def finish(exit_code: int | None = None) -> None:
    """Finishes the current run, if any."""
    run = _lifecycle.current()
    if run is not None:
        run.finish(exit_code)
