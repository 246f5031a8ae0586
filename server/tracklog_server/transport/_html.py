"""HTML of the web pages: run lists and a run's page (overview, metadata, config, summary, metrics,
system metrics, console output, files).

Every piece of user text, including anything in a run's metadata, goes through :func:`e`
(``html.escape``); URLs are built from percent-encoded parts and escaped again as attributes. Nothing
the run sent is ever emitted as markup or as a link target other than its own download path.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from tracklog_server._entities import FileInfo, OutputLine, OutputStream, Run, RunKey, SystemSnapshot

LOG_TAIL_LINES = 200  # console lines shown on a run's page

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
    "pre{background:#f6f6f6;padding:.8em;overflow:auto}.state{font-weight:bold}.err{color:#b00}"
)
# Overview rows taken from the metadata: label, then the path of keys (nested objects, or a flat
# "a.b" key) where the daemon puts the value.
_METADATA_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("OS", ("os",)),
    ("Python", ("python",)),
    ("Executable", ("executable",)),
    ("Program", ("program",)),
    ("Host", ("host",)),
    ("Git remote", ("git", "remote")),
    ("Git branch", ("git", "branch")),
    ("Git commit", ("git", "commit")),
    ("Git dirty", ("git", "dirty")),
)


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def pretty(json_text: str) -> str:
    try:
        return json.dumps(json.loads(json_text), indent=2, sort_keys=True, allow_nan=True)
    except ValueError:
        return json_text


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def run_path(key: RunKey) -> str:
    return f"/{quote(key.entity, safe='')}/{quote(key.project, safe='')}/runs/{quote(key.id, safe='')}"


def file_path(key: RunKey, name: str) -> str:
    """The download path of a file: its name's '/'-separated parts stay path segments."""
    return f"{run_path(key)}/files/{quote(name, safe='/')}"


def run_table(runs: list[Run]) -> str:
    if not runs:
        return "<p>No runs yet.</p>"
    rows = "".join(
        f"<tr><td><a href='{e(run_path(r.key))}'>{e(r.name)}</a></td>"
        f"<td>{e(r.key)}</td><td>{e(r.state.value)}</td><td>{r.history_rows}</td></tr>"
        for r in runs
    )
    return f"<table><tr><th>name</th><th>path</th><th>state</th><th>rows</th></tr>{rows}</table>"


def _lookup(metadata: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = metadata
    for part in path:
        if not isinstance(value, dict):
            value = None
            break
        value = value.get(part)
    return metadata.get(".".join(path)) if value is None else value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):  # e.g. {"implementation": "CPython", "version": "3.12.1"}
        return " ".join(str(v) for v in value.values() if not isinstance(v, dict | list))
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def _overview(run: Run) -> str:
    try:
        metadata = json.loads(run.metadata_json)
    except ValueError:
        metadata = {}
    if not isinstance(metadata, dict):
        metadata = {}
    rows = [
        ("Started", _utc(run.created_at)),
        ("Runtime", _duration(run.runtime)),
        ("Tracked hours", f"{run.tracked_seconds / 3600:.2f}"),
    ]
    for label, path in _METADATA_ROWS:
        value = _lookup(metadata, path)
        if label == "Host" and value in (None, ""):
            value = run.host or None
        if value not in (None, ""):
            rows.append((label, _show(value)))
    body = "".join(f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>" for label, value in rows)
    return (
        f"<h2>Overview</h2><table>{body}</table>"
        f"<details><summary>All metadata</summary><pre>{e(pretty(run.metadata_json))}</pre></details>"
    )


def _system(snapshot: SystemSnapshot | None) -> str:
    if snapshot is None or not snapshot.values:
        return ""
    rows = "".join(
        f"<tr><td>{e(key)}</td><td>{'&ndash;' if math.isnan(value) else e(f'{value:.4g}')}</td></tr>"
        for key, value in snapshot.values
    )
    return (
        f"<h2>System metrics</h2><p>Latest, at {e(_utc(snapshot.time))}</p>"
        f"<table><tr><th>key</th><th>value</th></tr>{rows}</table>"
    )


def _console(run: Run, lines: Sequence[OutputLine]) -> str:
    if not lines:
        return ""
    text = "\n".join(
        f"<span class='err'>{e(line.text)}</span>" if line.stream is OutputStream.STDERR else e(line.text)
        for line in lines
    )
    shown = f"the last {len(lines)} of {run.output_lines} lines" if run.output_lines > len(lines) else ""
    return f"<h2>Console output</h2>{f'<p>{shown}</p>' if shown else ''}<pre>{text}</pre>"


def _files(run: Run, files: Sequence[FileInfo]) -> str:
    if not files:
        return ""
    rows = []
    for f in files:
        name = (
            f"<a href='{e(file_path(run.key, f.name))}'>{e(f.name)}</a>"
            if f.complete
            else f"{e(f.name)} (incomplete)"
        )
        rows.append(
            f"<tr><td>{name}</td><td>{f.version}</td><td>{f.size}</td>"
            f"<td><code>{e(f.sha256[:12])}</code></td><td>{e(_utc(f.updated_at))}</td></tr>"
        )
    return (
        "<h2>Files</h2><table><tr><th>name</th><th>version</th><th>bytes</th><th>sha256</th>"
        f"<th>updated</th></tr>{''.join(rows)}</table>"
    )


def run_page(
    run: Run, snapshot: SystemSnapshot | None, lines: Sequence[OutputLine], files: Sequence[FileInfo]
) -> str:
    metrics = "".join(
        f"<tr><td>{e(m.key)}</td><td>{e(m.last)}</td><td>{e(m.min)}</td><td>{e(m.max)}</td>"
        f"<td>{m.last_step}</td></tr>"
        for m in run.metrics
    )
    tags = ", ".join(e(t) for t in run.tags)
    api = f"/api/runs/{quote(run.key.entity)}/{quote(run.key.project)}/{quote(run.key.id)}"
    body = (
        f"<h1>{e(run.name)}</h1>"
        f"<p>{e(run.key)} &middot; <span class='state'>{e(run.state.value)}</span>"
        f" &middot; {run.history_rows} rows</p>"
        + (f"<p>Tags: {tags}</p>" if run.tags else "")
        + (f"<p>Notes: {e(run.notes)}</p>" if run.notes else "")
        + (f"<p>Group: {e(run.group)}</p>" if run.group else "")
        + (f"<p>Job type: {e(run.job_type)}</p>" if run.job_type else "")
        + _overview(run)
        + f"<h2>Config</h2><pre>{e(pretty(run.config_json))}</pre>"
        + f"<h2>Summary</h2><pre>{e(pretty(run.summary_json))}</pre>"
        + (
            "<h2>Metrics</h2><table><tr><th>key</th><th>last</th><th>min</th><th>max</th>"
            f"<th>last step</th></tr>{metrics}</table>"
            if metrics
            else ""
        )
        + _system(snapshot)
        + _console(run, lines)
        + _files(run, files)
        + f"<p><a href='{e(api)}'>JSON</a></p>"
    )
    return page(f"{run.name} ({run.key})", body)
