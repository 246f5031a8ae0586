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

from tracklog import _history, _lifecycle, _names, _rescue, _settings, _spool, _tokens
from tracklog._capture import Capture, OutputChunk
from tracklog._config import Config
from tracklog._console import Console
from tracklog._errors import RunBusy, UsageError
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


def _run_dir(base: Path, runs: list[str], run_id: str, offline: bool, resume: str, start: float) -> Path:
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
    if resume == "must":
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
    # Frames rescued beside the spool (``_rescue``) belong to the run too: its daemon adds them
    # before this process's first frame, which must come after them.
    rescued = [f for path in _rescue.rescue_files(spool) for f in _rescue.read_rescue(path)[0]]
    for frame in [*_spool.frames(spool), *sorted(rescued, key=lambda f: f.seq)]:  # damage: the sync's
        if frame.seq <= last_seq:
            continue  # a rescued frame the spool holds already
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


def _spool_fallback(spool: Path) -> Callable[[list[tuple[int, bytes]]], str]:
    """finish()'s last resort for frames the daemon did not acknowledge: the run's spool when no
    daemon holds it (gone for good), else a rescue file beside it (``_rescue``: a stalled daemon
    still holds the spool's lock, and merges the file when it goes on). Says where they went."""

    def write(frames: list[tuple[int, bytes]]) -> str:
        try:
            writer = _spool.SpoolWriter(spool)
        except _spool.SpoolError:  # held: the daemon is alive but did not answer in time
            path = _rescue.write_rescue(spool, frames)
            return (
                f"they were written to {path}; the daemon holds the run's spool and adds them to it "
                "when it goes on (or when it starts again), as `tracklog sync` on the run directory "
                "does once no daemon holds it"
            )
        try:
            writer.append(frames)
        finally:
            writer.close()
        return (
            f"they were written to the run's spool {spool}; the next daemon start, or `tracklog sync` "
            "on the run directory, sends them"
        )

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
    run_dir = _run_dir(base, runs, settings.run_id, offline, settings.resume, start)
    if name is None:
        name = _names.generate(len(runs) + 1)
    name = _settings.validate_name(name)

    if settings.mode == "disabled":
        run = Run(
            settings, name=name, notes=notes, tags=tag_tuple, group=group, job_type=job_type,
            config=cfg, run_dir=run_dir, sender=None, printer=printer, start_time=start,
        )  # fmt: skip
        return run

    run_dir.mkdir(parents=True, exist_ok=True)
    spool = run_dir / f"run-{settings.run_id}.tlog"
    resumed = _resume_point(spool) if settings.resume else _ResumePoint()
    if resumed.config:  # the config so far, updated by what this init() passes
        cfg = Config()
        cfg.update({**resumed.config, **config_items})

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
        step=resumed.next_step,
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
        writer_token=resumed.writer_token or _tokens.new_token(),
    )
    sender.queue.append(records_pb2.Record(start=start_record))
    connected = _connect(sender, transport)
    sender.start()
    if not connected and not offline:
        printer.warn("the tracklog daemon is not answering yet; the run goes on and its data is kept")
    _lifecycle.adopt(run)
    printer.opening(run)
    run._console = _start_console(sender)
    return run


def _connect(sender: Sender, transport: Transport) -> bool:
    """The first connection (see ``Sender.connect_now``). RunBusy (another live process writes this
    run) propagates to init()'s caller: nothing of this run was written then."""
    try:
        return sender.connect_now(timeout=DAEMON_START_TIMEOUT)
    except RunBusy:
        transport.close()
        raise


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
