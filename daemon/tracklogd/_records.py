"""What the daemon needs to know about records and run references, without decoding history.

A frame's payload is a serialized ``tracklog.v1.Record`` whose oneof ``kind`` holds exactly one
field. Protobuf writes known fields first, in field-number order, so the payload's first byte is the
tag of that field: a Finish (field 6, length-delimited) starts with 0x32. The daemon checks that one
byte per frame and parses only the (tiny) candidate records, never a history batch.

The daemon also makes records for a run (system metrics, metadata, files), which it appends to its
own spool of the run (``_own``): ``system_record``, ``metadata_record``, ``file_records``.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

from tracklog._refs import validate_part
from tracklog._tokens import page_url
from tracklog.v1 import records_pb2

FILE_CHUNK_BYTES = 1 << 20  # the largest FileChunk.data the daemon sends

_FINISH_TAG = (6 << 3) | 2
_START_TAG = (1 << 3) | 2


def is_finish(payload: bytes) -> bool:
    if not payload or payload[0] != _FINISH_TAG:
        return False
    return records_pb2.Record.FromString(payload).WhichOneof("kind") == "finish"


def run_start(payload: bytes) -> records_pb2.RunStart | None:
    """The RunStart in ``payload``, or None if the record is something else."""
    if not payload or payload[0] != _START_TAG:
        return None
    record = records_pb2.Record.FromString(payload)
    return record.start if record.WhichOneof("kind") == "start" else None


def crashed_finish(pid: int, end_time: float) -> bytes:
    """The record the daemon appends for a training process that vanished without finishing."""
    finish = records_pb2.Finish(
        state=records_pb2.RUN_STATE_CRASHED,
        exit_code=-1,
        end_time=end_time,
        reason=f"training process {pid} vanished",
    )
    return records_pb2.Record(finish=finish).SerializeToString()


def ref_key(ref: records_pb2.RunRef) -> str:
    """``entity/project/id``: the run's identity, used as a dictionary key and in messages."""
    return f"{ref.entity}/{ref.project}/{ref.id}"


def validate_ref(ref: records_pb2.RunRef) -> None:
    """Raises ValueError naming the bad part."""
    validate_part("entity", ref.entity)
    validate_part("project", ref.project)
    validate_part("id", ref.id)


def spool_path(run_dir: str | Path, run_id: str) -> Path:
    return Path(run_dir) / f"run-{run_id}.tlog"


def run_url(http_url: str, ref: records_pb2.RunRef) -> str:
    """The run's page on a store whose HTTP base is ``http_url`` ("" when that is unknown)."""
    return page_url(http_url, f"{ref.entity}/{ref.project}/runs/{ref.id}")  # keeps a ?token=...


def system_record(rows: Sequence[tuple[float, Mapping[str, float]]]) -> bytes:
    """A ``system`` record: one row per ``(unix time, {key: value})``, one series per key seen in any
    row, NaN in the rows that did not measure it."""
    keys = sorted({key for _, values in rows for key in values})
    count = len(rows)
    batch = records_pb2.SystemBatch(timestamps=struct.pack(f"<{count}d", *(t for t, _ in rows)))
    for key in keys:
        column = (values.get(key, math.nan) for _, values in rows)
        batch.series.add(key=key, values=struct.pack(f"<{count}d", *column))
    return records_pb2.Record(system=batch).SerializeToString()


def metadata_record(metadata: Mapping[str, object]) -> bytes:
    text = json.dumps(metadata, default=str, ensure_ascii=False)
    return records_pb2.Record(metadata=records_pb2.Metadata(json=text)).SerializeToString()


def file_records(
    name: str, data: bytes, *, version: int = 1, chunk_size: int = FILE_CHUNK_BYTES
) -> list[bytes]:
    """The ``file`` records of one version of a file: chunks of at most ``chunk_size`` bytes in
    order, at least one (an empty file is one empty last chunk), the digest in the last."""
    size = len(data)
    digest = hashlib.sha256(data).hexdigest()
    out = []
    for offset in range(0, max(size, 1), chunk_size):
        piece = data[offset : offset + chunk_size]
        last = offset + chunk_size >= size
        chunk = records_pb2.FileChunk(
            name=name,
            version=version,
            offset=offset,
            data=piece,
            last=last,
            size=size,
            sha256=digest if last else "",
        )
        out.append(records_pb2.Record(file=chunk).SerializeToString())
    return out
