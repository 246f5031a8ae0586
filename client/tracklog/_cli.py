"""The ``tracklog`` command: server, daemon, sync, runs, ui, login, and editing runs (tag, untag,
rename, group, note, stop, delete)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tracklog import _cli_kept, _cli_repair, _cli_runs, _cli_show, _home, _spool
from tracklog._errors import TracklogError, UsageError

if TYPE_CHECKING:
    import tracklogd
    from tracklog.v1 import records_pb2


def _cmd_server(args: argparse.Namespace, rest: list[str]) -> int:
    import tracklog_server

    return tracklog_server.main(rest)


def _cmd_daemon(args: argparse.Namespace, rest: list[str]) -> int:
    import tracklogd

    home = _home.home()
    if args.action == "start":
        tracklogd.start(home)
        print(f"tracklog daemon running for {home}")
        return 0
    if args.action == "stop":
        stopped = tracklogd.stop(home, timeout=30.0)
        print("tracklog daemon stopped" if stopped else "no tracklog daemon was running")
        return 0
    status = tracklogd.status(home)
    if status is None:
        print(f"no tracklog daemon is running for {home}")
        return 1
    print(f"tracklog daemon pid {status.pid}, version {status.version}, home {home}")
    print(f"local store server: {status.local_server or '(starting)'}")
    if not status.runs:
        print("no runs attached or waiting to sync")
    for run in status.runs:
        ref = run.ref
        state = "attached" if run.attached else "syncing"
        print(
            f"  {ref.entity}/{ref.project}/{ref.id}  {state}  durable {run.durable_seq}  "
            f"synced {run.synced_seq}  server {run.server or 'local'}"
            + (f"  REFUSED: {run.refused}" if run.refused else "")
        )
    return 0


def _store_address(explicit: str | None) -> str:
    from tracklog import _api, _settings

    address = explicit or os.environ.get("TRACKLOG_SERVER", "")
    if address:
        return _settings.validate_server(address)
    return _api.local_server(_home.home())


def _find_spools(paths: Sequence[str], all_offline: bool) -> list[Path]:
    """The training process's spools (``run-<id>.tlog``); the daemon's own spool of a run, left
    beside it, goes with it (``_sync_daemon_spool``)."""
    import tracklogd

    return [spool for spool in _find_all_spools(paths, all_offline) if not tracklogd.is_own_spool(spool)]


def _find_all_spools(paths: Sequence[str], all_offline: bool) -> list[Path]:
    spools: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.suffix == ".tlog":
            spools.append(path)
            continue
        found = sorted(path.glob("run-*.tlog")) if path.is_dir() else []
        if not found:
            raise TracklogError(f"{raw} is not a tracklog run directory (no run-*.tlog spool in it)")
        spools.extend(found)
    if all_offline:
        root = Path(os.environ.get("TRACKLOG_DIR") or os.getcwd()) / "tracklog"
        spools.extend(sorted(root.glob("offline-run-*/run-*.tlog")))
    return spools


class _Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, progress: tracklogd.SyncProgress) -> None:
        done, total = progress.synced_seq, self.total
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = width if total == 0 else int(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        text = f"{self.label} [{bar}] {done}/{total} frames"
        if self.tty:
            sys.stderr.write("\r" + text + ("\n" if done >= total else ""))
        elif done >= total:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _cmd_sync(args: argparse.Namespace, rest: list[str]) -> int:
    from tracklog import _cli_sync

    selected = _cli_sync.select(args)  # no PATH, no --all: every unsynced run under ./tracklog
    spools = (
        _cli_sync.keep_ids(_find_spools(args.paths, args.all), args.ids) if selected is None else selected
    )
    if args.dry_run:
        return _cli_sync.dry_run(spools)
    if not spools:
        print("nothing to sync")
        return 0
    import tracklogd

    server = _store_address(args.server)
    failed = lossy = 0
    for spool in spools:
        label = spool.parent.name
        ref = _cli_sync.ref_for(spool, args)
        _cli_sync.say_where(ref, label)
        failed += _cli_repair.take_rescued(spool, label)
        lossy += _cli_repair.seal_abandoned_end(spool, label)
        last, damage, recorded = 0, list[_spool.Damage](), list[bytes]()
        try:
            with _spool.scan(spool) as found:
                for item in found:
                    if isinstance(item, _spool.Damage):
                        damage.append(item)
                    else:
                        last = item.seq
                        if item.payload[:1] == _cli_repair.LOST_TAG:
                            recorded.append(item.payload)
                last = max(last, found.last_seq)
        except (OSError, _spool.SpoolError) as exc:
            print(f"{label}: cannot read {spool}: {exc}", file=sys.stderr)
            failed += 1
            continue
        already = _spool.read_synced(spool)
        if already >= last:
            print(f"{label}: already synced ({last} frames)")
            lossy += _report_damage(label, damage) | _cli_repair.report_recorded(label, recorded)
        else:
            try:
                result = tracklogd.sync_spool(
                    spool, server, progress=_Progress(label, last), on_damage=None, ref=ref
                )
            except Exception as exc:  # report per run and go on with the others
                print(f"{label}: sync failed: {exc}", file=sys.stderr)
                failed += 1
                continue
            refused = (
                f"; the server refused {result.refused} of them (see the run's problems)"
                if result.refused
                else ""
            )
            print(f"{label}: synced {result.frames_sent} new frames to {server}{refused}")
            if result.start_lost:
                print(
                    f"{label}: frame 1, the run's start record, is damaged: the run was stored as "
                    f"{result.ref} (its id from the file's name; the default entity and project, no name, "
                    "config or tags)",
                    file=sys.stderr,
                )
            lossy += _report_damage(label, damage)
            if result.tail_bytes:  # after a crash mid-write: those frames were never acked to anyone
                print(
                    f"{label}: the last {result.tail_bytes} bytes of {spool.name} are not a whole frame "
                    f"({result.tail_reason}); they were not sent",
                    file=sys.stderr,
                )
        failed += _sync_daemon_spool(spool, server, label, ref)
    return 1 if failed or lossy else 0


def _report_damage(label: str, damage: list[_spool.Damage]) -> int:
    """Prints each damaged stretch of a spool (file, frames, rows); 1 if any frame was lost, else 0."""
    lost = [d for d in damage if d.frames]
    for d in damage:
        print(f"{label}: {d.describe()}", file=sys.stderr)
    if not lost:
        return 0
    frames = sum(d.frames for d in lost)
    rows = _spool.rows_text(sum(d.rows for d in lost), all(d.rows_known for d in lost))
    print(
        f"{label}: {frames} damaged frame{'s' if frames != 1 else ''} ({rows}) could not be read; "
        "the store records the loss on the run",
        file=sys.stderr,
    )
    return 1


def _sync_daemon_spool(spool: Path, server: str, label: str, ref: records_pb2.RunRef | None = None) -> int:
    """Sends the daemon's own spool of the run (system metrics, metadata, captured files), when a
    daemon left one beside ``spool`` unsynced; after the client's, whose RunStart the store needs.
    Returns 1 when it failed (reported), else 0."""
    import tracklogd

    own = tracklogd.own_spool_beside(spool)
    if not own.exists():
        return 0  # an offline run, or a daemon that made nothing for it
    last = max((frame.seq for frame in _spool.frames(own)), default=0)
    if _spool.read_synced(own) >= last:
        return 0
    try:
        result = tracklogd.sync_own_spool(
            spool, server, ref=ref, progress=_Progress(f"{label} (daemon)", last)
        )
    except Exception as exc:
        print(f"{label}: sync of the daemon's records failed: {exc}", file=sys.stderr)
        return 1
    sent = result.frames_sent if result is not None else 0
    print(f"{label}: synced {sent} new frames of the daemon's records (system metrics, metadata)")
    return 0


def _await_local_sync(timeout: float = 10.0) -> None:
    """Lets the daemon finish handing runs that have ended to the local store, so that a run that
    just finished is listed (read-your-writes on this machine). Runs still attached do not wait."""
    import tracklogd

    home = _home.home()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = tracklogd.status(home)
        # A run the store refused is not waited for: it stays in its spool (reported below the list).
        if status is None or all(
            r.attached or r.refused or r.synced_seq >= r.durable_seq for r in status.runs
        ):
            return
        time.sleep(0.05)  # polling the daemon's status; it has no "synced" event to wait on


def _cmd_runs(args: argparse.Namespace, rest: list[str]) -> int:
    from tracklog import _settings
    from tracklog._api import Api

    if not args.server and not _settings.configured_server(os.environ, _home.home()):
        _await_local_sync()
    if _cli_runs.wants_search(args):
        return _cli_runs.cmd_runs(args)
    with Api(args.server) as api:
        runs = list(api.runs(args.path, limit=args.limit))  # fetched while the channel is open
    if not args.server:  # the local daemon's refused runs (any store): never silent
        _cli_kept.print_kept_runs(_home.home())
    if not runs:
        print("no runs" + (f" in {args.path}" if args.path else ""))
        return 0
    rows = [("RUN", "NAME", "STATE", "CREATED", "RUNTIME", "ROWS", "HOST", "COMMIT", "SUMMARY")]
    for run in runs:
        summary = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in list(sorted(run.summary.items()))[:4]
            if not k.startswith("_")
        )
        git = run.metadata.get("git")
        git = git if isinstance(git, dict) else {}
        commit = str(git.get("commit", ""))[:8] + ("+" if git.get("dirty") else "")
        host = str(run.metadata.get("host") or run.host)
        rows.append(
            (
                run.path, run.name, run.state, run.created_at, _duration(run.runtime),
                _rows(run.history_rows, run.rows_lost, run.problems), host, commit, summary,
            )
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    for run in runs:  # what a run lost, under the table: a loss is never only a number
        for problem in run.problems:
            print(f"{run.path}: {problem}")
    return 0


def _rows(rows: int, lost: int, problems: Sequence[str]) -> str:
    if lost:
        return f"{rows} ({lost} lost)"
    return f"{rows} (problems)" if problems else str(rows)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _edit(args: argparse.Namespace, change: str) -> int:
    """Loads the run at ``args.path``, applies ``change`` and saves it; errors name the command."""
    from tracklog._api import Api

    with Api(args.server) as api:
        run = api.run(args.path)
        if change == "tag":
            run.tags.extend(t for t in args.tags if t not in run.tags)
        elif change == "untag":
            missing = [t for t in args.tags if t not in run.tags]
            if missing:
                raise UsageError(f"run {run.path} has no tag {', '.join(map(repr, missing))}")
            run.tags = [t for t in run.tags if t not in args.tags]
        elif change == "rename":
            run.name = args.name
        elif change == "group":
            run.group = args.group
        else:
            run.notes = args.text
        run.update()
    print(f"{run.path}: name {run.name!r}, tags {', '.join(run.tags) or '(none)'}")
    return 0


def _cmd_edit(args: argparse.Namespace, rest: list[str]) -> int:
    return _edit(args, args.command)


def _cmd_stop(args: argparse.Namespace, rest: list[str]) -> int:
    from tracklog._api import Api

    with Api(args.server) as api:
        api.run(args.path).stop()
    print(f"asked run {args.path} to stop; it ends killed once its training process reacts")
    return 0


def _cmd_delete(args: argparse.Namespace, rest: list[str]) -> int:
    from tracklog._api import Api

    if args.filter or args.dry_run:
        return _cli_runs.cmd_delete_by_filter(args)

    with Api(args.server) as api:
        runs = [api.run(path) for path in args.paths]  # every path exists before anything goes
        if not args.yes:
            listed = "\n".join(f"  {r.path}  {r.name}  {r.state}" for r in runs)
            print(f"{_cli_runs.count_runs(len(runs))} will be deleted (their ids stay reserved):\n{listed}")
            if not sys.stdin.isatty():
                raise UsageError("no terminal to confirm on; pass --yes to delete without asking")
            if input("Delete them? [y/N] ").strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        api.delete_runs(runs, delete_files=args.delete_files)
    print(f"deleted {len(runs)} run{'s' if len(runs) != 1 else ''}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="tracklog", description="Experiment tracking for machine-learning runs."
    )
    sub = top.add_subparsers(dest="command", required=True)
    from tracklog import _cli_habits, _cli_sync

    server = sub.add_parser(
        "server", help="run a store server (see `tracklog server --help`)", add_help=False
    )
    server.set_defaults(func=_cmd_server)

    daemon = sub.add_parser("daemon", help="start, stop or inspect this machine's daemon")
    daemon.add_argument("action", choices=("start", "stop", "status"))
    daemon.set_defaults(func=_cmd_daemon)

    sync = sub.add_parser("sync", help="send runs to the store server (safe to repeat)")
    sync.add_argument(
        "paths", nargs="*", metavar="PATH", help="run directories (default: every unsynced one)"
    )
    sync.add_argument("--all", action="store_true", help="every offline run under ./tracklog")
    sync.add_argument("--server", help="host:port of the store server (default: TRACKLOG_SERVER or local)")
    _cli_sync.add_arguments(sync)
    sync.set_defaults(func=_cmd_sync)

    runs = sub.add_parser("runs", help="list runs in a table")
    runs.add_argument("path", nargs="?", metavar="ENTITY/PROJECT")
    runs.add_argument("--limit", type=int, default=50, help="at most this many runs (0: all)")
    runs.add_argument("--server", help="host:port of the store server")
    _cli_runs.add_arguments(runs)
    runs.set_defaults(func=_cmd_runs)

    def editor(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("path", metavar="PATH", help="the run, as entity/project/id")
        cmd.add_argument("--server", help="host:port of the store server")
        cmd.set_defaults(func=_cmd_edit)
        return cmd

    editor("tag", "add tags to a run").add_argument("tags", nargs="+", metavar="TAG")
    editor("untag", "remove tags from a run").add_argument("tags", nargs="+", metavar="TAG")
    editor("rename", "set a run's name").add_argument("name", metavar="NAME")
    editor("note", "set a run's notes").add_argument("text", metavar="TEXT")
    editor("group", "move a run to a group ('' for none)").add_argument("group", metavar="GROUP")

    stop = sub.add_parser("stop", help="stop a running run (it ends killed)")
    stop.add_argument("path", metavar="PATH", help="the run, as entity/project/id")
    stop.add_argument("--server", help="host:port of the store server")
    stop.set_defaults(func=_cmd_stop)

    delete = sub.add_parser("delete", help="delete runs (their ids stay reserved)")
    delete.add_argument(
        "paths", nargs="+", metavar="PATH", help="runs, as entity/project/id (with --filter: entity/project)"
    )
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.add_argument("--delete-files", action="store_true", help="also drop the runs' stored files")
    delete.add_argument("--server", help="host:port of the store server")
    delete.add_argument("--filter", metavar="JSON", help="delete the runs of ENTITY/PROJECT matching it")
    delete.add_argument(
        "--dry-run", action="store_true", help="with --filter: list what would go, delete nothing"
    )
    delete.set_defaults(func=_cmd_delete)

    from tracklog import _cli_ui

    _cli_ui.add_parser(sub)
    _cli_show.add_parser(sub)
    _cli_habits.add_commands(sub)  # offline, online, disabled, status, login, logout
    _cli_habits.add_version(top)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["server"]:  # everything after `server` belongs to the server's own parser
        return _cmd_server(argparse.Namespace(), argv[1:])
    args = parser().parse_args(_cli_runs.join_sort(argv))
    try:
        return int(args.func(args, []))
    except Exception as exc:
        if not _ours(exc):
            raise  # a bug: its traceback is the report
        # Each error once, as the command's: "tracklog tag: run e/p/x not found" (a message that
        # already names its command keeps its own prefix).
        text = str(exc)
        print(text if text.startswith("tracklog ") else f"tracklog {args.command}: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _ours(exc: Exception) -> bool:
    """An error tracklog raises on purpose (the SDK's, the daemon's or the store's tree), whose
    message says what went wrong; not a bug."""
    module = type(exc).__module__.split(".", 1)[0]
    return isinstance(exc, TracklogError) or module in ("tracklogd", "tracklog_server")
