"""JSON routes of one run: read, edit, stop, delete, console output, files.

Routes are plain (sync) functions: FastAPI runs them in its thread pool, and every store call is its
own short session. They translate and validate; the application layer decides.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from tracklog.v1 import records_pb2
from tracklog_server._entities import FileInfo, RunChanges, RunKey
from tracklog_server._errors import InvalidInputError
from tracklog_server._limits import MAX_LONG_TEXT
from tracklog_server._records import run_key
from tracklog_server._validate import check_text
from tracklog_server.application import _runs as app_runs
from tracklog_server.storage._store import AbstractStore

from . import _web_models as m
from ._web_files import file_response
from ._web_json import iso, run_json

router = APIRouter(prefix="/api/v1/runs/{entity}/{project}/{run_id}", tags=["runs"])

MAX_LOG_LINES = 10_000
_TEXT_TYPES = ("application/json", "application/xml", "application/yaml", "application/x-yaml")
_TEXT_SUFFIXES = (".log", ".txt", ".md", ".py", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".csv", ".patch")


def store_of(request: Request) -> AbstractStore:
    store: AbstractStore = request.app.state.store
    return store


def caller_of(request: Request) -> app_runs.Caller:
    caller: app_runs.Caller = request.app.state.caller
    return caller


def key_of(entity: str, project: str, run_id: str) -> RunKey:
    return run_key(records_pb2.RunRef(entity=entity, project=project, id=run_id))


Store = Annotated[AbstractStore, Depends(store_of)]
Caller = Annotated[app_runs.Caller, Depends(caller_of)]
Key = Annotated[RunKey, Depends(key_of)]


@router.get("", response_model=m.RunOut)
def get_run(store: Store, key: Key) -> dict[str, Any]:
    return run_json(store.get_run(key))


@router.patch("", response_model=m.RunOut)
def edit_run(store: Store, caller: Caller, key: Key, edit: m.RunEdit) -> dict[str, Any]:
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    if edit.tags is not None:
        for tag in edit.tags:
            if not tag:
                raise InvalidInputError("a tag is empty")
            check_text(tag, f"tag {tag[:40]!r}")
        # The body holds the new set; the store merges per tag (so a tag the training process adds
        # meanwhile survives): send what to add and what to remove.
        current = set(store.get_run(key).tags)
        wanted = dict.fromkeys(edit.tags)
        add = tuple(t for t in wanted if t not in current)
        remove = tuple(sorted(current - set(wanted)))
    changes = RunChanges(
        name=None if edit.name is None else check_text(edit.name, "name"),
        notes=None if edit.notes is None else check_text(edit.notes, "notes", MAX_LONG_TEXT),
        group=None if edit.group is None else check_text(edit.group, "group"),
        job_type=None if edit.job_type is None else check_text(edit.job_type, "job_type"),
        add_tags=add,
        remove_tags=remove,
    )
    return run_json(app_runs.update_run(store, caller, key, changes))


@router.post("/stop", response_model=m.RunOut, responses={409: {"model": m.ErrorBody}})
def stop_run(store: Store, caller: Caller, key: Key) -> dict[str, Any]:
    app_runs.stop_run(store, caller, key)
    return run_json(store.get_run(key))


@router.delete("", response_model=m.Deleted)
def delete_run(store: Store, caller: Caller, key: Key, delete_files: bool = False) -> dict[str, int]:
    return {"deleted": app_runs.delete_runs(store, caller, [key], delete_files=delete_files)}


@router.get("/logs", response_model=m.LogPage)
def logs(
    store: Store,
    key: Key,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_LINES)] = 1000,
    q: Annotated[str, Query(max_length=1024)] = "",
) -> dict[str, Any]:
    """Console lines from ``offset``; with ``q``, only lines holding it (case-insensitive), and
    ``offset``/``total`` count those."""
    if not q:
        run = store.get_run(key)
        lines = [line for page in store.logs(key, offset, limit) for line in page]
        out = [_line(offset + i, line) for i, line in enumerate(lines)]
        return {"lines": out, "total": run.output_lines}
    needle = q.casefold()
    found: list[dict[str, Any]] = []
    total = 0
    n = 0
    for page in store.logs(key):
        for line in page:
            if needle in line.text.casefold():
                if offset <= total < offset + limit:
                    found.append(_line(n, line))
                total += 1
            n += 1
    return {"lines": found, "total": total}


def _line(n: int, line: Any) -> dict[str, Any]:
    return {"n": n, "stream": line.stream.value, "text": line.text, "time": iso(line.time)}


@router.get("/logs.txt", response_class=StreamingResponse)
def logs_text(store: Store, key: Key) -> StreamingResponse:
    pages = store.logs(key)  # a missing run fails here, before the response starts

    def body() -> Iterator[bytes]:
        for page in pages:
            yield "".join(line.text + "\n" for line in page).encode("utf-8", "replace")

    name = f"{key.id}-output.log"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "X-Content-Type-Options": "nosniff"}
    return StreamingResponse(body(), media_type="text/plain; charset=utf-8", headers=headers)


def is_text(name: str) -> bool:
    kind, _ = mimetypes.guess_type(name, strict=False)
    return (kind or "").startswith("text/") or kind in _TEXT_TYPES or name.lower().endswith(_TEXT_SUFFIXES)


def _file(info: FileInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "size": info.size,
        "updated_at": iso(info.updated_at),
        "text": is_text(info.name),
        "complete": info.complete,
        "version": info.version,
        "sha256": info.sha256,
    }


@router.get("/files", response_model=m.FileList)
def files(store: Store, key: Key) -> dict[str, Any]:
    return {"files": [_file(info) for info in store.list_files(key)]}


@router.get("/files/{name:path}", response_class=Response)
def download(store: Store, key: Key, name: str, request: Request, inline: bool = False) -> Response:
    """The file's latest complete version: an attachment, or text/plain with ``inline=1`` for a text
    file. ETag (the content's sha256), If-None-Match, and one byte range (Range, If-Range)."""
    info, pieces = store.read_file(key, name)  # a missing file fails here, as a 404
    return file_response(info, pieces, request.headers, inline=inline and is_text(info.name))
