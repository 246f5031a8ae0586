"""Applying system metrics, console output and file chunks, inside the ingest's transaction.

Writes are gathered while the ops are applied in seq order and flushed once per ingest, so a batch
adds a bounded number of statements whatever its size: one bulk INSERT of system chunks, one of
console lines, and for files one SELECT of the versions the batch continues, one bulk INSERT of new
versions, one bulk UPDATE of continued ones and one bulk INSERT of chunks.

File versions: a chunk at offset 0 starts the next version of its name (1, 2, 3 ... in arrival
order), unless an upload of the same name and sender version is in progress and has received nothing
yet. A chunk at another offset must continue the upload in progress with the same name and sender
version exactly where it stopped; anything else is refused (INVALID_ARGUMENT), so stored data is
always contiguous from 0. Numbering by arrival, not by the sender's number, keeps a resumed run (whose
new process counts versions from 1 again) from colliding with what its first process saved.
The announced size is informational: a file that changed while being read is stored as sent, with
the sha256 the sender computed over those bytes. The server does not re-hash (that would mean
reading back earlier chunks inside the transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from tracklog_server._capture_records import STREAM_CODES, FileOp, OutputOp, SystemOp
from tracklog_server._errors import InvalidInputError
from tracklog_server._limits import MAX_FILES_PER_RUN, MAX_SYSTEM_KEYS

from ._models import TIMESTAMP_KEY, FileChunkRow, FileVersionRow, OutputLineRow, SystemChunkRow


class CaptureRun(Protocol):
    """The locked run's fields this module maintains (``_ingest.LockedRun`` has them)."""

    pk: int
    output_line_count: int
    file_count: int
    system_keys: list[str]


@dataclass(slots=True)
class _Version:
    name: str
    version: int
    upload_version: int
    size: int
    received: int
    sha256: str
    complete: bool
    updated_at: float
    stored: bool  # the row exists (UPDATE it) or not yet (INSERT it)
    changed: bool = False

    def row(self, run_pk: int) -> dict[str, Any]:
        return {
            "run_pk": run_pk,
            "name": self.name,
            "version": self.version,
            "upload_version": self.upload_version,
            "size": self.size,
            "received": self.received,
            "sha256": self.sha256,
            "complete": self.complete,
            "updated_at": self.updated_at,
        }


class CaptureWriter:
    def __init__(self, conn: Connection, run: CaptureRun, now: float) -> None:
        self.conn = conn
        self.run = run
        self.now = now
        self.system_rows: list[dict[str, Any]] = []
        self.output_rows: list[dict[str, Any]] = []
        self.file_ops: list[FileOp] = []
        self._system_keys: set[str] | None = None

    def system(self, seq: int, op: SystemOp) -> None:
        run_pk = self.run.pk
        common = {"run_pk": run_pk, "seq": seq, "min_time": op.min_time, "max_time": op.max_time, "n": op.n}
        self.system_rows.append({**common, "key": TIMESTAMP_KEY, "values": op.times_bytes})
        for key, values in op.series:
            self.system_rows.append({**common, "key": key, "values": values})
        if self._system_keys is None:
            self._system_keys = set(self.run.system_keys)
        new = [key for key, _ in op.series if key not in self._system_keys]
        if new:
            self._system_keys.update(new)
            if len(self._system_keys) > MAX_SYSTEM_KEYS:
                raise InvalidInputError(
                    f"the run would have {len(self._system_keys)} system metric keys; "
                    f"the limit is {MAX_SYSTEM_KEYS}"
                )
            self.run.system_keys = sorted(self._system_keys)

    def output(self, op: OutputOp) -> None:
        run_pk = self.run.pk
        line_no = self.run.output_line_count
        for line in op.lines:
            self.output_rows.append(
                {
                    "run_pk": run_pk,
                    "line_no": line_no,
                    "time": line.time,
                    "stream": STREAM_CODES[line.stream],
                    "text": line.text,
                }
            )
            line_no += 1
        self.run.output_line_count = line_no

    def file(self, op: FileOp) -> None:
        self.file_ops.append(op)  # applied in flush(), after one SELECT of what they continue

    def flush(self) -> None:
        """Writes what the ops gathered; raises InvalidInputError (writing nothing more) when a file
        chunk does not continue its upload."""
        file_writes = self._apply_files() if self.file_ops else None
        if self.system_rows:
            self.conn.execute(insert(_SYSTEM), self.system_rows)
        if self.output_rows:
            self.conn.execute(insert(_OUTPUT), self.output_rows)
        if file_writes is not None:
            inserts, updates, chunks = file_writes
            if inserts:
                self.conn.execute(insert(_VERSIONS), inserts)
            if updates:
                self.conn.execute(_UPDATE_VERSION, updates)
            if chunks:
                self.conn.execute(insert(_CHUNKS), chunks)

    def _apply_files(
        self,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        run_pk = self.run.pk
        names = sorted({op.name for op in self.file_ops})
        if len(names) > MAX_FILES_PER_RUN:
            raise InvalidInputError(
                f"{len(names)} files in one batch; a run holds at most {MAX_FILES_PER_RUN}"
            )
        latest: dict[str, int] = {}  # name -> highest version stored
        uploads: dict[tuple[str, int], _Version] = {}  # (name, sender's version) -> upload in progress
        for row in self.conn.execute(_SELECT_VERSIONS, {"b_run_pk": run_pk, "b_names": names}).mappings():
            latest[row["name"]] = max(latest.get(row["name"], 0), row["version"])
            if not row["complete"]:
                stored = _Version(**{k: v for k, v in row.items() if k != "run_pk"}, stored=True)
                previous = uploads.get((stored.name, stored.upload_version))
                if previous is None or previous.version < stored.version:
                    uploads[(stored.name, stored.upload_version)] = stored
        touched: list[_Version] = []
        chunks: list[dict[str, Any]] = []
        for op in self.file_ops:
            upload = uploads.get((op.name, op.version))
            if op.offset == 0 and (upload is None or upload.received > 0):
                if op.name not in latest:
                    self.run.file_count += 1
                    if self.run.file_count > MAX_FILES_PER_RUN:
                        raise InvalidInputError(
                            f"file {op.name!r} would be file {self.run.file_count} of the run; "
                            f"the limit is {MAX_FILES_PER_RUN}"
                        )
                version = latest[op.name] = latest.get(op.name, 0) + 1
                upload = _Version(op.name, version, op.version, op.size, 0, "", False, self.now, stored=False)
                uploads[(op.name, op.version)] = upload
            elif upload is None:
                raise InvalidInputError(
                    f"file {op.name!r} version {op.version}: a chunk at offset {op.offset} but no upload of "
                    "it is in progress (chunks must arrive in order, starting at offset 0)"
                )
            elif op.offset != upload.received:
                raise InvalidInputError(
                    f"file {op.name!r} version {op.version}: a chunk at offset {op.offset}, expected "
                    f"offset {upload.received} (chunks must arrive in order)"
                )
            if op.data:
                chunks.append(
                    {
                        "run_pk": run_pk,
                        "name": op.name,
                        "version": upload.version,
                        "byte_offset": op.offset,
                        "data": op.data,
                    }
                )
            upload.received += len(op.data)
            upload.size = op.size
            upload.updated_at = self.now
            if not upload.changed:
                upload.changed = True
                touched.append(upload)
            if op.last:
                upload.complete = True
                upload.sha256 = op.sha256
                upload.size = upload.received
                del uploads[(op.name, op.version)]
        inserts = [v.row(run_pk) for v in touched if not v.stored]
        updates = [{f"b_{k}": value for k, value in v.row(run_pk).items()} for v in touched if v.stored]
        return inserts, updates, chunks


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


_SYSTEM = _table(SystemChunkRow)
_OUTPUT = _table(OutputLineRow)
_VERSIONS = _table(FileVersionRow)
_CHUNKS = _table(FileChunkRow)
_LATEST = _VERSIONS.alias("latest")
# Per name: its highest version (to number the next one) and its uploads in progress (few: usually
# none, one while a file is being sent, more only if a sender died mid-upload).
_SELECT_VERSIONS = select(_VERSIONS).where(
    _VERSIONS.c.run_pk == bindparam("b_run_pk"),
    _VERSIONS.c.name.in_(bindparam("b_names", expanding=True)),
    or_(
        ~_VERSIONS.c.complete,
        _VERSIONS.c.version
        == select(func.max(_LATEST.c.version))
        .where(_LATEST.c.run_pk == _VERSIONS.c.run_pk, _LATEST.c.name == _VERSIONS.c.name)
        .scalar_subquery(),
    ),
)
_UPDATE_VERSION = (
    update(_VERSIONS)
    .where(
        _VERSIONS.c.run_pk == bindparam("b_run_pk"),
        _VERSIONS.c.name == bindparam("b_name"),
        _VERSIONS.c.version == bindparam("b_version"),
    )
    .values({c.name: bindparam(f"b_{c.name}") for c in _VERSIONS.c if not c.primary_key})
)
