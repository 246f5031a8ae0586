"""``tracklog show PATH``: one run's overview, the fields of the Overview tab of the run's page (author,
command, description, runtime, tracked hours, Git, host, OS, Python, run path, start time, state,
hardware, tags, version), then its config and summary."""

from __future__ import annotations

import argparse
import json
import math
import shlex
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracklog._api import ApiRun

MAX_VALUE = 200  # characters of one config or summary value shown; longer ones are cut with "..."


def add_parser(sub: Any) -> None:
    show = sub.add_parser("show", help="print one run's overview, config and summary")
    show.add_argument("path", metavar="PATH", help="the run: entity/project/id, project/id or its URL")
    show.add_argument("--json", action="store_true", help="print the overview as one JSON object")
    show.add_argument("--server", help="host:port of the store server")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace, rest: list[str]) -> int:
    from tracklog._api import Api

    with Api(args.server) as api:
        run = api.run(args.path)
        fields = overview(run)
    if args.json:
        doc: dict[str, Any] = dict(fields)
        doc.update(config=run.config, summary=run.summary)
        print(json.dumps(doc, indent=2, default=str, allow_nan=True))
        return 0
    print(render(fields, run.config, run.summary))
    return 0


def overview(run: ApiRun) -> list[tuple[str, str]]:
    """(label, text) pairs in the order of the Overview tab; a field the run lacks shows as ""."""
    meta = run.metadata
    found = meta.get("git")
    git: dict[str, Any] = found if isinstance(found, dict) else {}
    commit = str(git.get("commit", ""))
    if commit and git.get("dirty"):
        commit += " (uncommitted changes, see diff.patch)"
    program, args = meta.get("program"), meta.get("args")
    command = ""
    if program:
        words = [str(program), *(args if isinstance(args, list) else [])]
        command = " ".join(shlex.quote(str(w)) for w in words)
    return [
        ("Name", run.name),
        ("Author", str(meta.get("username", "")) or run.entity),
        ("Command", command),
        ("Description", run.notes),
        ("State", run.state + (f" (exit code {run.exit_code})" if run.exit_code else "")),
        ("Start time", _time(run.start_time)),
        ("Runtime", _duration(run.runtime)),
        ("Tracked hours", f"{run.tracked_seconds / 3600:.2f}"),
        ("Run path", run.path),
        ("Tags", ", ".join(run.tags)),
        ("Group", run.group),
        ("Job type", run.job_type),
        ("Host name", str(meta.get("host", "")) or run.host),
        ("OS", str(meta.get("os", ""))),
        ("Python version", str(meta.get("python", ""))),
        ("Python executable", str(meta.get("executable", ""))),
        ("Git repository", str(git.get("remote", ""))),
        ("Git branch", str(git.get("branch", ""))),
        ("Git state", commit),
        ("System hardware", _hardware(meta)),
        ("tracklog version", str(meta.get("tracklog_version", ""))),
        ("URL", run.url),
    ]


def render(fields: list[tuple[str, str]], config: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    width = max(len(label) for label, _ in fields)
    lines = [f"{label.ljust(width)}  {value}".rstrip() for label, value in fields]
    for title, doc in (("Config", config), ("Summary", summary)):
        shown = {k: v for k, v in doc.items() if not k.startswith("_")}
        lines.append("")
        lines.append(f"{title}:" if shown else f"{title}: (none)")
        key_width = max((len(k) for k in shown), default=0)
        lines.extend(f"  {k.ljust(key_width)}  {_value(v)}" for k, v in sorted(shown.items()))
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value) if math.isfinite(value) else str(value)  # nan, inf, -inf
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, default=str, allow_nan=True)
    text = text.replace("\n", "\\n")
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else ""


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def _hardware(meta: Mapping[str, Any]) -> str:
    parts = []
    cpu = meta.get("cpu_model")
    cores, threads = meta.get("cpu_count"), meta.get("cpu_count_logical")
    if cpu or threads:
        counts = f"{cores} cores, {threads} threads" if cores else f"{threads} threads"
        parts.append(f"{cpu or 'CPU'} ({counts})" if threads else str(cpu))
    memory = meta.get("memory")
    total = memory.get("total") if isinstance(memory, dict) else None
    if isinstance(total, int | float) and total:
        parts.append(f"{total / 2**30:.1f} GiB memory")
    count = meta.get("gpu_count")
    if count:
        parts.append(f"{count} x {meta.get('gpu', 'GPU')}")
    return "; ".join(parts)
