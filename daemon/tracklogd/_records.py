"""What the daemon needs to know about records and run references, without decoding history.

A frame's payload is a serialized ``tracklog.v1.Record`` whose oneof ``kind`` holds exactly one
field. Protobuf writes known fields first, in field-number order, so the payload's first byte is the
tag of that field: a Finish (field 6, length-delimited) starts with 0x32. The daemon checks that one
byte per frame and parses only the (tiny) candidate records, never a history batch.
"""

from __future__ import annotations

from pathlib import Path

from tracklog._refs import validate_part
from tracklog.v1 import records_pb2

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
    if not http_url:
        return ""
    return f"{http_url.rstrip('/')}/{ref.entity}/{ref.project}/runs/{ref.id}"
