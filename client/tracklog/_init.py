"""``tracklog.init()``: settings, the run directory, the first record, the sender, the opening lines."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracklog import (
    _history,
    _identity,
    _init_args,
    _lifecycle,
    _metrics,
    _names,
    _rescue,
    _settings,
    _spool,
    _tokens,
    _user_settings,
)
from tracklog._capture import Capture, OutputChunk
from tracklog._config import Config
from tracklog._console import Console
from tracklog._errors import RunBusy, UsageError
from tracklog._run import Run
from tracklog._sender import MAX_BUFFER_BYTES, Sender
from tracklog._terminal import Printer
from tracklog._transport import DaemonTransport, SpoolTransport, Transport
from tracklog._user_settings import Settings as UserSettings
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


def _history_rows(spool: Path) -> Iterator[dict[str, Any]]:
    """The history rows a run's spool holds, in order (for a resumed run's defined summaries)."""
    for frame in _spool.frames(spool):
        record = records_pb2.Record.FromString(frame.payload)
        if record.WhichOneof("kind") == "history":
            yield from _history.decode_rows([records_pb2.HistoryBatch.FromString(record.history)])


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
    entity: str | None = None,
    project: str | None = None,
    dir: str | os.PathLike[str] | None = None,
    id: str | None = None,
    name: str | None = None,
    notes: str | None = None,
    tags: Sequence[str] | None = None,
    config: Mapping[str, Any] | argparse.Namespace | str | os.PathLike[str] | None = None,
    config_exclude_keys: Sequence[str] | None = None,
    config_include_keys: Sequence[str] | None = None,
    allow_val_change: bool | None = None,
    group: str | None = None,
    job_type: str | None = None,
    mode: str | None = None,
    force: bool | None = None,
    anonymous: str | None = None,
    reinit: bool | str | None = None,
    resume: str | bool | None = None,
    resume_from: str | None = None,
    fork_from: str | None = None,
    save_code: bool | None = None,
    tensorboard: bool | None = None,
    sync_tensorboard: bool | None = None,
    monitor_gym: bool | None = None,
    settings: UserSettings | Mapping[str, Any] | None = None,
) -> Run:
    """Starts a run and returns it; also available as ``tracklog.run`` until it finishes.

    The parameters are wandb's ``init()``'s, in its order (entity, then project). Each argument
    left as None comes from ``settings``, then the environment (``TRACKLOG_*``), then the default.
    ``force``, ``anonymous``, ``resume_from``, ``fork_from``, ``tensorboard``, ``sync_tensorboard``
    and ``monitor_gym`` are accepted and ignored, with one warning each.
    """
    user = _user_settings.coerce(settings)
    env = _init_args.env_fields(os.environ)
    quiet = os.environ.get("TRACKLOG_SILENT", "").lower() in ("1", "true")
    printer = Printer(quiet=bool(user.silent) if user.silent is not None else quiet)
    _init_args.warn_unsupported(
        printer,
        {
            "force": force, "anonymous": anonymous, "resume_from": resume_from, "fork_from": fork_from,
            "tensorboard": tensorboard, "sync_tensorboard": sync_tensorboard, "monitor_gym": monitor_gym,
        },
    )  # fmt: skip
    _init_args.warn_unsupported(printer, user.unsupported, "setting {name!r}")
    reinit_mode = _init_args.reinit_mode(reinit if reinit is not None else user.reinit)
    if reinit == "create_new" or (reinit is None and user.reinit == "create_new"):
        _init_args.warn_unsupported(printer, {"reinit='create_new'": True}, "init({name})")
    previous = _lifecycle.current()
    if previous is not None and reinit_mode == "return_previous":
        return previous

    def pick(given: Any, setting: Any, key: str) -> Any:
        return given if given is not None else setting if setting is not None else env.get(key)

    name = pick(name, user.run_name, "name")
    notes = pick(notes, user.run_notes, "notes")
    tags = pick(tags, user.run_tags, "tags")
    group = pick(group, user.run_group, "group")
    job_type = pick(job_type, user.run_job_type, "job_type")
    resume = pick(resume, user.resume, "resume")
    save_code = save_code if save_code is not None else bool(user.save_code)
    allow_val_change = allow_val_change if allow_val_change is not None else bool(user.allow_val_change)
    server_env = {"TRACKLOG_SERVER": user.server} if user.server else {}
    settings_ = _settings.resolve(
        project=project or user.project,
        entity=entity or user.entity,
        run_id=id or user.run_id,
        mode=mode or user.mode,
        dir=dir or user.root_dir,
        resume=resume,
        environ={**os.environ, **server_env},
    )
    _settings.max_buffer_bytes(os.environ, MAX_BUFFER_BYTES)  # a bad TRACKLOG_MAX_BUFFER_MB fails here
    cfg = Config(allow_val_change=allow_val_change)
    cfg.update(  # validates before anything is created
        _init_args.select_keys(_init_args.load_config(config), config_exclude_keys, config_include_keys)
    )
    config_items = cfg.as_dict()
    tag_tuple = _settings.validate_tags(tags) if tags is not None else ()
    notes = _settings.validate_text("notes", notes, _settings.MAX_NOTES) if notes is not None else ""
    group = _settings.validate_text("group", group, 128) if group is not None else ""
    job_type = _settings.validate_text("job_type", job_type, 64) if job_type is not None else ""
    console = (user.console or os.environ.get("TRACKLOG_CONSOLE", "on")).lower() not in ("off", "false", "0")
    run = _start(
        settings_, name=name, notes=notes, tags=tag_tuple, group=group, job_type=job_type, cfg=cfg,
        config_items=config_items, printer=printer,
        console=console,
    )  # fmt: skip
    if save_code and run.mode != "disabled":
        script = _init_args.main_script()
        if script is not None:
            run.save(script, policy="now")
    return run


def _start(
    settings: _settings.Settings,
    *,
    name: str | None,
    notes: str,
    tags: tuple[str, ...],
    group: str,
    job_type: str,
    cfg: Config,
    config_items: dict[str, Any],
    printer: Printer,
    console: bool,
) -> Run:
    """Creates the run ``init()`` resolved: its directory, spool, sender and first record."""
    tag_tuple = tags
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
        _lifecycle.adopt(run)  # tracklog.run and the module-level calls reach it; each does nothing
        return run

    run_dir.mkdir(parents=True, exist_ok=True)
    so_far = {**(stored.config if stored is not None else {}), **resumed.config}
    definitions = _metrics.from_config(so_far)  # the reserved key is not the user's config
    if so_far:  # the config so far, updated by what this init() passes
        cfg = Config(allow_val_change=cfg._allow_changes)
        cfg.update({**so_far, **config_items}, allow_val_change=True)
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
        max_buffer_bytes=_settings.max_buffer_bytes(os.environ, MAX_BUFFER_BYTES),
    )
    run = Run(
        settings, name=name, notes=notes, tags=tag_tuple, group=group, job_type=job_type,
        config=cfg, run_dir=run_dir, sender=sender, printer=printer, start_time=start,
        step=next_step,
    )  # fmt: skip
    if definitions:
        # The summaries a definition asks for span the whole run: replay what the spool holds.
        run._restore_metrics(definitions, _history_rows(spool))
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
    connected = _connect(sender, transport)
    sender.start()
    if not connected and not offline:
        printer.warn("the tracklog daemon is not answering yet; the run goes on and its data is kept")
    _lifecycle.adopt(run)
    if settings.auto_resume:
        _mark_auto_resume(run, base / _settings.AUTO_RESUME_FILE)
    printer.opening(run)
    run._console = _start_console(sender) if console else None
    return run


def _mark_auto_resume(run: Run, marker: Path) -> None:
    """resume="auto": the next such init() here continues this run, unless it ends finished."""
    try:
        marker.write_text(json.dumps({"run_id": run.id}) + "\n")
    except OSError as exc:
        run._printer.warn(f"resume='auto' cannot note the run in {marker} ({exc.strerror}); it starts anew")
        return

    def forget() -> None:
        try:
            if json.loads(marker.read_text()).get("run_id") == run.id:
                marker.unlink()
        except (OSError, ValueError, AttributeError):
            pass  # gone already, or another run's now

    run._on_finished.append(forget)


def _connect(sender: Sender, transport: Transport) -> bool:
    """The first connection (see ``Sender.connect_now``). RunBusy (another live process writes this
    run) propagates to init()'s caller: nothing of this run was written then."""
    try:
        return sender.connect_now(timeout=DAEMON_START_TIMEOUT)
    except RunBusy:
        transport.close()
        raise


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
    """Console capture into the run's queue."""
    queue = sender.queue
    console = Console(lambda lines: queue.append(OutputChunk(lines)))
    return console if console.start() else None


def finish(exit_code: int | None = None) -> None:
    """Finishes the current run, if any."""
    run = _lifecycle.current()
    if run is not None:
        run.finish(exit_code)
