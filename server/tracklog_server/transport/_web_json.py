"""Entities to the JSON of the web API: runs, times, and values JSON cannot hold.

JSON has no NaN or infinity, and a run's config and summary may hold them (they survive the round trip
everywhere else): they travel as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, as
wandb's export does. Times are ISO 8601 UTC strings. Nothing here decides anything: it translates.
"""

from __future__ import annotations

import json
import math
import shlex
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from tracklog_server._entities import Run, RunKey

_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def jsonable(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name (recursively)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else _NONFINITE[value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def loads(text: str) -> dict[str, Any]:
    """A stored JSON object (NaN allowed), or {} when empty or not an object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return jsonable(value) if isinstance(value, dict) else {}


def iso(unix: float) -> str | None:
    """ISO 8601 UTC with milliseconds, or None for 0 (not happened yet)."""
    if not unix or not math.isfinite(unix):
        return None
    return (
        datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def run_path(key: RunKey) -> str:
    """The run's page, in wandb's shape: ``/<entity>/<project>/runs/<id>``."""
    return f"/{quote(key.entity, safe='')}/{quote(key.project, safe='')}/runs/{quote(key.id, safe='')}"


def _command(metadata: dict[str, Any]) -> str:
    program = metadata.get("program")
    if not isinstance(program, str) or not program:
        return ""
    args = metadata.get("args")
    words = [str(a) for a in args] if isinstance(args, list) else []
    return (
        shlex.join(["python", *program.split(" ", 1), *words])
        if program.startswith("-m ")
        else (shlex.join(["python", program, *words]))
    )


_HARDWARE_KEYS = (
    "cpu_model",
    "cpu_count",
    "cpu_count_logical",
    "memory",
    "disk",
    "gpu",
    "gpu_count",
    "gpu_devices",
    "cuda_version",
    "nvidia_driver_version",
)


def run_json(run: Run) -> dict[str, Any]:
    """The Run object of the web API (see webapi in the README)."""
    metadata = loads(run.metadata_json)
    metadata.setdefault("command", _command(metadata))
    metadata.setdefault("hardware", {k: metadata[k] for k in _HARDWARE_KEYS if k in metadata})
    git = metadata.get("git")
    if isinstance(git, dict):
        git.setdefault("diff", "")
    user = metadata.get("username")
    return {
        "entity": run.key.entity,
        "project": run.key.project,
        "id": run.key.id,
        "name": run.name,
        "state": run.state.value,
        "created_at": iso(run.created_at),
        "heartbeat_at": iso(run.heartbeat_at),
        "ended_at": iso(run.finished_at),
        "runtime": jsonable(run.runtime),
        "tracked_hours": jsonable(run.tracked_seconds / 3600),
        "user": user if isinstance(user, str) else "",
        "host": run.host,
        "tags": list(run.tags),
        "notes": run.notes,
        "group": run.group,
        "job_type": run.job_type,
        "exit_code": run.exit_code,
        "config": loads(run.config_json),
        "summary": loads(run.summary_json),
        "metrics": [
            {
                "key": m.key,
                "last": jsonable(m.last),
                "min": jsonable(m.min),
                "max": jsonable(m.max),
                "last_step": m.last_step,
            }
            for m in run.metrics
        ],
        "metadata": metadata,
        "rows": run.history_rows,
        "last_step": run.last_step,
        "rows_lost": run.rows_lost,
        "problems": list(run.problems),
        "output_lines": run.output_lines,
        "url": run_path(run.key),
    }
