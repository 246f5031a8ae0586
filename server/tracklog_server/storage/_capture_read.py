"""Reading console output and files back, in pages that fit one gRPC message.

Both are append-only once written (console lines are never changed; a complete file version never
changes), so a reader may take several short sessions and still see one consistent state: the plan
(how many lines, which chunks) is fixed in the first session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from tracklog_server._capture_records import STREAMS
from tracklog_server._entities import FileInfo, OutputLine
from tracklog_server._errors import RunFileNotFoundError
from tracklog_server._limits import DEFAULT_LOG_PAGE_LINES, MAX_PAGE_BYTES

from ._models import FileChunkRow, FileVersionRow, OutputLineRow

SessionFactory = Callable[[], AbstractContextManager[Session]]

# Per line on the wire besides its text: time, stream and the field tags and lengths.
_LINE_OVERHEAD = 24
# Rows buffered by the driver while a page is filled: lines can be long, pages stop early.
_LINE_BUFFER = 64

_Line = OutputLineRow
_Version = FileVersionRow
_Chunk = FileChunkRow


def read_logs(
    sessions: SessionFactory, run_pk: int, start: int, stop: int
) -> Iterator[tuple[OutputLine, ...]]:
    """Lines ``start`` (inclusive) to ``stop`` (exclusive) in order, in pages of at most
    DEFAULT_LOG_PAGE_LINES lines and MAX_PAGE_BYTES of text (a longer single line is a page alone)."""
    cursor = start
    while cursor < stop:
        lines: list[OutputLine] = []
        size = 0
        with sessions() as session:
            result = session.execute(
                select(_Line.line_no, _Line.time, _Line.stream, _Line.text)
                .where(_Line.run_pk == run_pk, _Line.line_no >= cursor, _Line.line_no < stop)
                .order_by(_Line.line_no)
                .limit(DEFAULT_LOG_PAGE_LINES),
                execution_options={"yield_per": _LINE_BUFFER},
            )
            try:
                for line_no, time, stream, text in result:
                    cost = len(text.encode("utf-8")) + _LINE_OVERHEAD
                    if lines and size + cost > MAX_PAGE_BYTES:
                        break
                    lines.append(OutputLine(time, STREAMS[stream], text))
                    size += cost
                    cursor = line_no + 1
            finally:
                result.close()  # a page that stopped early leaves a server-side cursor open
        if not lines:
            return
        yield tuple(lines)


def _info(row: FileVersionRow) -> FileInfo:
    return FileInfo(row.name, row.version, row.size, row.sha256, row.updated_at, row.complete)


def list_files(session: Session, run_pk: int) -> list[FileInfo]:
    """Per name: its latest complete version, or its latest version when none is complete."""
    latest = (
        select(
            _Version.name.label("name"),
            func.coalesce(
                func.max(case((_Version.complete, _Version.version), else_=None)), func.max(_Version.version)
            ).label("version"),
        )
        .where(_Version.run_pk == run_pk)
        .group_by(_Version.name)
        .subquery()
    )
    rows = session.execute(
        select(_Version)
        .join(latest, (_Version.name == latest.c.name) & (_Version.version == latest.c.version))
        .where(_Version.run_pk == run_pk)
        .order_by(_Version.name)
    ).scalars()
    return [_info(row) for row in rows]


def open_file(
    session: Session, run_pk: int, run: str, name: str, version: int
) -> tuple[FileInfo, list[tuple[int, int]]]:
    """The complete version asked for (0: the latest complete one) and its chunks' (offset, length),
    or RunFileNotFoundError saying what is missing (``run`` names the run in the message)."""
    stmt = select(_Version).where(_Version.run_pk == run_pk, _Version.name == name)
    if version:
        row = session.execute(stmt.where(_Version.version == version)).scalar_one_or_none()
        if row is None:
            raise RunFileNotFoundError(f"run {run} has no version {version} of file {name!r}")
        if not row.complete:
            raise RunFileNotFoundError(f"version {version} of file {name!r} of run {run} is still incomplete")
    else:
        row = session.execute(
            stmt.where(_Version.complete).order_by(_Version.version.desc()).limit(1)
        ).scalar_one_or_none()
        if row is None:
            exists = session.execute(stmt.limit(1)).first() is not None
            if exists:
                raise RunFileNotFoundError(f"file {name!r} of run {run} has no complete version yet")
            raise RunFileNotFoundError(f"run {run} has no file {name!r}")
    layout = session.execute(
        select(_Chunk.byte_offset, func.length(_Chunk.data))
        .where(_Chunk.run_pk == run_pk, _Chunk.name == name, _Chunk.version == row.version)
        .order_by(_Chunk.byte_offset)
    ).all()
    return _info(row), [(offset, length) for offset, length in layout]


def read_chunks(
    sessions: SessionFactory, run_pk: int, info: FileInfo, layout: Sequence[tuple[int, int]]
) -> Iterator[bytes]:
    """The version's bytes in order, in pieces of at most MAX_PAGE_BYTES; each query fetches stored
    chunks adding up to about MAX_PAGE_BYTES (one chunk when it is larger)."""
    start = 0
    while start < len(layout):
        stop, size = start + 1, layout[start][1]
        while stop < len(layout) and size + layout[stop][1] <= MAX_PAGE_BYTES:
            size += layout[stop][1]
            stop += 1
        first, last = layout[start][0], layout[stop - 1][0]
        with sessions() as session:  # closed before yielding: a slow reader holds no connection
            blobs = list(
                session.execute(
                    select(_Chunk.data)
                    .where(
                        _Chunk.run_pk == run_pk,
                        _Chunk.name == info.name,
                        _Chunk.version == info.version,
                        _Chunk.byte_offset >= first,
                        _Chunk.byte_offset <= last,
                    )
                    .order_by(_Chunk.byte_offset)
                ).scalars()
            )
        for blob in blobs:
            data = bytes(blob)
            for i in range(0, len(data), MAX_PAGE_BYTES):
                yield data[i : i + MAX_PAGE_BYTES]
        start = stop
