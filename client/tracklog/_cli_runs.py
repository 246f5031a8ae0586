"""``tracklog runs ENTITY/PROJECT --filter JSON --sort KEY --columns ... [--json]`` and
``tracklog delete ENTITY/PROJECT --filter JSON [--dry-run]``: searching a project's runs from the
shell, as ``Api().runs()`` does."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tracklog import _history
from tracklog._errors import TracklogError, UsageError

if TYPE_CHECKING:
    from tracklog._api import ApiRun

DEFAULT_COLUMNS = ("id", "name", "state", "created_at", "runtime")
_FIELDS = (
    "id", "path", "name", "state", "created_at", "heartbeat_at", "runtime", "group", "job_type",
    "host", "user", "tags", "notes",
)  # fmt: skip


def add_arguments(runs: argparse.ArgumentParser) -> None:
    """The search options of ``tracklog runs``."""
    runs.add_argument(
        "--filter",
        metavar="JSON",
        help='MongoDB-style as in Api().runs(filters=...): \'{"config.lr": {"$lt": 0.1}}\'',
    )
    runs.add_argument("--sort", metavar="KEY", help="-summary.acc (descending), +config.lr, name ...")
    runs.add_argument(
        "--columns",
        metavar="LIST",
        help=f"comma-separated: {', '.join(_FIELDS)}, config.<key>, summary.<key> "
        f"(default with --filter/--sort: {','.join(DEFAULT_COLUMNS)})",
    )
    runs.add_argument("--json", action="store_true", help="print one JSON object per run, one per line")


def join_sort(argv: list[str]) -> list[str]:
    """``--sort -summary.acc`` as ``--sort=-summary.acc``: argparse would take the descending key
    for an option of its own."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--sort" and i + 1 < len(argv) and argv[i + 1].startswith("-") and len(argv[i + 1]) > 1:
            out.append(f"--sort={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def wants_search(args: argparse.Namespace) -> bool:
    return bool(args.filter or args.sort or args.columns or args.json)


def parse_filter(text: str | None, command: str) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"tracklog {command}: --filter is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(
            f'tracklog {command}: --filter must be a JSON object, like \'{{"state": "finished"}}\''
        )
    return value


def parse_columns(text: str | None) -> list[str]:
    if not text:
        return list(DEFAULT_COLUMNS)
    columns = [c.strip() for c in text.split(",") if c.strip()]
    for column in columns:
        if column not in _FIELDS and not column.startswith(("config.", "summary.")):
            raise UsageError(
                f"tracklog runs: unknown column {column!r}; "
                f"use {', '.join(_FIELDS)}, config.<key> or summary.<key>"
            )
    return columns or list(DEFAULT_COLUMNS)


def cell(run: ApiRun, column: str) -> Any:
    """The value of ``column`` for ``run`` (None when the run has no such value)."""
    if column.startswith("config."):
        return _dotted(run.config, column[len("config.") :])
    if column.startswith("summary."):
        return _dotted(run.summary, column[len("summary.") :])
    if column == "path":
        return run.path
    if column == "user":
        return run.metadata.get("username")
    return getattr(run, column, None)


def _dotted(doc: Mapping[str, Any], key: str) -> Any:
    """``doc[key]``, or the nested value ``key`` names with dots (``optimizer.lr``)."""
    if key in doc:
        return doc[key]
    node: Any = doc
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, list):
        return ",".join(text(v) for v in value)
    if isinstance(value, str):
        return value
    return _history.dumps(value)


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned columns (the last one not padded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def cmd_runs(args: argparse.Namespace) -> int:
    """``tracklog runs ENTITY/PROJECT`` with --filter, --sort, --columns or --json."""
    from tracklog._api import Api

    if not args.path:
        raise UsageError("tracklog runs: --filter, --sort, --columns and --json need ENTITY/PROJECT")
    filters = parse_filter(args.filter, "runs")
    columns = parse_columns(args.columns)
    try:
        with Api(args.server) as api:
            runs = api.runs(args.path, filters=filters, order=args.sort or None, limit=max(0, args.limit))
            picked = list(runs)
            total = len(runs)
    except TracklogError as exc:
        raise UsageError(f"tracklog runs: {exc}") from exc
    if args.json:
        for run in picked:
            print(_history.dumps({c: cell(run, c) for c in columns}))
        return 0
    if not picked:
        print(f"no runs in {args.path}" + (" match the filter" if filters else ""))
        return 0
    rows = [[c.upper() if c in _FIELDS else c for c in columns]]
    rows.extend([text(cell(run, c)) for c in columns] for run in picked)
    print(table(rows))
    if total > len(picked):
        print(f"({len(picked)} of {total} runs; --limit 0 shows all)")
    return 0


def cmd_delete_by_filter(args: argparse.Namespace) -> int:
    """``tracklog delete ENTITY/PROJECT --filter JSON [--dry-run] [--yes]``."""
    from tracklog._api import Api

    if len(args.paths) != 1:
        raise UsageError("tracklog delete --filter takes one ENTITY/PROJECT")
    filters = parse_filter(args.filter, "delete")
    if not filters:
        raise UsageError(
            'tracklog delete: --filter needs a condition; every run: \'{"id": {"$exists": true}}\''
        )
    path = args.paths[0]
    try:
        with Api(args.server) as api:
            going = api.delete_runs(path, filters=filters, dry_run=True)
            if not going:
                print(f"no runs in {path} match the filter; nothing deleted")
                return 0
            listed = "\n".join(f"  {p}" for p in going)
            if args.dry_run:
                print(f"{count_runs(len(going))} would be deleted:\n{listed}")
                return 0
            if not args.yes:
                print(f"{count_runs(len(going))} will be deleted (their ids stay reserved):\n{listed}")
                if not sys.stdin.isatty():
                    raise UsageError("no terminal to confirm on; pass --yes to delete without asking")
                if input("Delete them? [y/N] ").strip().lower() not in ("y", "yes"):
                    print("nothing deleted")
                    return 1
            # Exactly the runs listed (all or nothing), not whatever matches by now.
            deleted = api.delete_runs(going, delete_files=args.delete_files)
    except TracklogError as exc:
        raise UsageError(f"tracklog delete: {exc}") from exc
    print(f"deleted {deleted} run{'s' if deleted != 1 else ''}")
    return 0


def count_runs(n: int) -> str:
    """ "1 run", "2 runs": the count a confirmation starts with."""
    return f"{n} run" if n == 1 else f"{n} runs"
