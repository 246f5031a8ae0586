"""Applying the daemon's own frames of a run (``IngestRequest.source = SOURCE_DAEMON``).

A run has two writers (see DESIGN.md, "Two writers per run, one owner per file"): the training
process numbers its records in ``runs.last_seq``, the daemon numbers the records it makes (system
metrics, metadata, the files it captures) in a sequence of its own, ``runs.daemon_seq``. Both are
applied at most once, in order, under the same lock on the run row, so a resend after a timeout
duplicates nothing.

Invariants:

* Only ``system``, ``metadata`` and ``file`` records come from the daemon: anything else is refused
  before the transaction (INVALID_ARGUMENT), as a client record in the daemon's sequence would let the
  daemon rewrite what the training process owns.
* The daemon's frames are applied only to a run the store knows: until the client's RunStart is
  applied, the answer is accepted=False with applied_through 0, and the daemon tries again later.
* ``system_chunks`` is keyed by ``(run_pk, seq, key)``, and client seqs (old spools carried system
  metrics in the client's sequence) are 1 or more, so the daemon's frame ``n`` is stored as seq
  ``-n``: the two sequences never collide, and readers never order by seq across batches.
* One ingest issues a bounded number of statements: the run row's SELECT ... FOR UPDATE, at most six
  for the capture (``_capture_ingest``), and one UPDATE of the run row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from google.protobuf.message import DecodeError
from sqlalchemy.engine import Connection

from tracklog.v1 import records_pb2
from tracklog_server._capture_records import FileOp, MetadataOp, SystemOp, decode_capture
from tracklog_server._entities import IngestResult, RunKey
from tracklog_server._errors import InvalidInputError
from tracklog_server._limits import MAX_RECORD_BYTES
from tracklog_server._records import EmptyOp, LostOp, check_seq, decode_lost

from ._capture_ingest import CaptureWriter
from ._ingest import _dumps_doc, check_not_deleted, check_writer, lock_run

DaemonOp = SystemOp | MetadataOp | FileOp | LostOp | EmptyOp
# "lost": frames of the daemon's spool a reader could not read (damage on disk), reported in their
# place as for the client's spool; the next frame continues after the lost range.
DAEMON_KINDS = frozenset({"system", "metadata", "file", "lost"})


def decode_daemon_frames(frames: Sequence[tuple[int, bytes]]) -> list[tuple[int, DaemonOp]]:
    """Decodes the daemon's ``(seq, serialized Record)`` pairs: consecutive seqs from 1 or more, and
    only the kinds the daemon makes. Raises InvalidInputError naming the frame."""
    out: list[tuple[int, DaemonOp]] = []
    previous = 0
    for seq, payload in frames:
        check_seq(seq, previous)
        if len(payload) > MAX_RECORD_BYTES:
            limit = MAX_RECORD_BYTES
            raise InvalidInputError(f"frame {seq}: record is {len(payload)} bytes; the limit is {limit}")
        try:
            record = records_pb2.Record.FromString(payload)
        except DecodeError as exc:
            raise InvalidInputError(f"frame {seq}: record is not a valid tracklog.v1.Record") from exc
        kind = record.WhichOneof("kind")
        if kind not in DAEMON_KINDS:
            raise InvalidInputError(
                f"frame {seq}: the daemon's sequence holds only system, metadata, file and lost "
                f"records, not {kind or 'an empty record'}"
            )
        try:
            op = decode_lost(record.lost) if kind == "lost" else decode_capture(record, kind)
            if isinstance(op, LostOp) and op.first_seq != seq:
                raise InvalidInputError(f"FramesLost from seq {op.first_seq} must be sent at that seq")
        except InvalidInputError as exc:
            raise InvalidInputError(f"frame {seq}: {exc}") from exc
        assert op is None or isinstance(op, SystemOp | MetadataOp | FileOp | LostOp)  # by its kind
        out.append((seq, EmptyOp() if op is None else op))
        previous = op.last_seq if isinstance(op, LostOp) else seq
    return out


def apply_daemon_frames(
    conn: Connection, key: RunKey, frames: Sequence[tuple[int, DaemonOp]], now: float, writer: str = ""
) -> IngestResult:
    """Applies decoded daemon frames to the locked run; ``applied_through`` is its daemon_seq.
    ``writer`` is ``writer_hash`` of the request's token: the daemon sends the run's own."""
    run = lock_run(conn, key)
    if run is None:
        return IngestResult(False, 0)  # the client's RunStart has not arrived yet: try again later
    check_not_deleted(run, key)
    check_writer(run, key, writer)
    fresh = [(seq, op) for seq, op in frames if seq > run.daemon_seq]
    if not fresh:
        return IngestResult(True, run.daemon_seq)  # an idempotent resend
    if fresh[0][0] != run.daemon_seq + 1:
        return IngestResult(False, run.daemon_seq)  # a gap: the daemon resends from daemon_seq + 1
    capture = CaptureWriter(conn, run, now)
    metadata: dict[str, object] | None = None
    for seq, op in fresh:
        if isinstance(op, SystemOp):
            capture.system(-seq, op)  # negated: never the seq of a client frame (see above)
        elif isinstance(op, FileOp):
            capture.file(op)
        elif isinstance(op, LostOp):
            run.note_problem(op.problem, op.rows)
        elif isinstance(op, MetadataOp) and op.items:
            if metadata is None:
                metadata = json.loads(run.metadata_json)
            metadata.update(op.items)
    capture.flush()  # first: it may still refuse the batch (a file chunk out of order)
    if metadata is not None:
        run.metadata_json = _dumps_doc(metadata, "metadata")
    last_seq, last_op = fresh[-1]
    run.daemon_seq = last_op.last_seq if isinstance(last_op, LostOp) else last_seq
    run.save(conn)
    return IngestResult(True, run.daemon_seq)
