"""Decoding the records of automatic capture: system metrics, metadata, console output, files, timing.

Like ``_records``, everything that can make a batch invalid is found here, before any database work.
Rules (each refusal is an InvalidInputError with its reason):

* SystemBatch: float64 timestamps, finite, non-negative and non-decreasing; each series has one float64
  per row (NaN means "not measured" and is kept); keys are 1-``MAX_KEY_BYTES`` bytes, unique in the
  batch, not ``_timestamp``. A batch without rows changes nothing.
* Metadata: a JSON object (merged into the run's metadata by top-level key).
* OutputLines: finite non-negative times, stream stdout or stderr, at most ``MAX_OUTPUT_LINE``
  characters per line; a NUL in a line is kept as U+FFFD (PostgreSQL's text cannot hold it).
* FileChunk: a relative '/'-separated name without empty, '.' or '..' parts, backslashes or control
  characters; version 1 or more; at most ``MAX_FILE_CHUNK_BYTES`` of data ending at most
  ``MAX_FILE_BYTES`` into the file; the last chunk carries the file's sha256 (64 hex digits).
  Whether a chunk continues an upload in order is decided at ingest, against what is stored.
* Timing: finite, non-negative seconds.
"""

from __future__ import annotations

import math
import operator
import re
from array import array
from dataclasses import dataclass
from itertools import islice
from typing import Any

from tracklog._history import unpack_float64
from tracklog.v1 import records_pb2

from ._entities import OutputLine, OutputStream
from ._errors import InvalidInputError
from ._limits import MAX_FILE_BYTES, MAX_FILE_CHUNK_BYTES, MAX_OUTPUT_LINE
from ._validate import check_key, check_time, loads_object
from .storage._models import TIMESTAMP_KEY

# Streams as stored in output_lines.stream: the tracklog.v1.OutputStream numbers.
STREAM_CODES = {
    OutputStream.STDOUT: records_pb2.OUTPUT_STREAM_STDOUT,
    OutputStream.STDERR: records_pb2.OUTPUT_STREAM_STDERR,
}
STREAMS: dict[int, OutputStream] = {code: stream for stream, code in STREAM_CODES.items()}
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class SystemOp:
    """One SystemBatch with at least one row, as it will be stored: the row times and each series'
    values packed as they came."""

    times_bytes: bytes
    n: int
    min_time: float
    max_time: float
    series: tuple[tuple[str, bytes], ...]  # (key, float64 LE values, one per row)


@dataclass(frozen=True, slots=True)
class MetadataOp:
    items: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutputOp:
    lines: tuple[OutputLine, ...]


@dataclass(frozen=True, slots=True)
class FileOp:
    name: str
    version: int  # the sender's number; ties the chunks of one upload together
    offset: int
    data: bytes
    last: bool
    size: int  # the whole file's size as the sender saw it
    sha256: str  # lower-case hex; set on the last chunk


@dataclass(frozen=True, slots=True)
class TimingOp:
    runtime: float
    tracked_seconds: float


def decode_system(batch: records_pb2.SystemBatch) -> SystemOp | None:
    """The batch to store, or None when it has no rows (then it changes nothing)."""
    if len(batch.timestamps) % 8:
        raise InvalidInputError(f"system timestamps are {len(batch.timestamps)} bytes, not a multiple of 8")
    n = len(batch.timestamps) // 8
    if n == 0:
        if batch.series:
            raise InvalidInputError("system batch has series but no rows")
        return None
    times = unpack_float64(batch.timestamps)
    if not all(map(math.isfinite, times)) or times[0] < 0:
        raise InvalidInputError("system timestamps must be finite, non-negative unix times")
    if not _non_decreasing(times):
        raise InvalidInputError("system timestamps must be in ascending order")
    seen: set[str] = set()
    series = []
    for s in batch.series:
        key = check_key(s.key, "a system metric key")
        if key == TIMESTAMP_KEY:
            raise InvalidInputError(f"system metric key {key!r} is reserved")
        if key in seen:
            raise InvalidInputError(f"system metric {key!r} appears twice in one batch")
        seen.add(key)
        if len(s.values) != 8 * n:
            raise InvalidInputError(f"system metric {key!r} needs one float64 value per row ({n})")
        series.append((key, s.values))
    return SystemOp(batch.timestamps, n, times[0], times[-1], tuple(series))


def _non_decreasing(values: array[float]) -> bool:
    return all(map(operator.le, values, islice(values, 1, None)))


def decode_metadata(metadata: records_pb2.Metadata) -> MetadataOp:
    return MetadataOp(loads_object(metadata.json, "metadata"))


def decode_output(output: records_pb2.OutputLines) -> OutputOp:
    lines = []
    for line in output.lines:
        stream = STREAMS.get(line.stream)
        if stream is None:
            raise InvalidInputError(f"output line stream must be stdout or stderr, got {line.stream}")
        if len(line.text) > MAX_OUTPUT_LINE:
            limit = MAX_OUTPUT_LINE
            raise InvalidInputError(f"an output line is {len(line.text)} characters; the limit is {limit}")
        text = line.text
        if "\x00" in text:  # what a terminal does not show, and PostgreSQL's text cannot hold
            text = text.replace("\x00", "\ufffd")
        lines.append(OutputLine(check_time(line.time, "output line time"), stream, text))
    return OutputOp(tuple(lines))


def check_file_name(name: str) -> str:
    check_key(name, "file name")
    if name.startswith("/") or "\\" in name or _CONTROL.search(name):
        raise InvalidInputError(
            f"file name {name!r} must be a relative '/'-separated path without backslashes or control "
            "characters"
        )
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise InvalidInputError(f"file name {name!r} has an empty, '.' or '..' part")
    return name


def decode_file(chunk: records_pb2.FileChunk) -> FileOp:
    name = check_file_name(chunk.name)
    if chunk.version < 1:
        raise InvalidInputError(f"file {name!r}: version must be 1 or more")
    if len(chunk.data) > MAX_FILE_CHUNK_BYTES:
        raise InvalidInputError(
            f"file {name!r}: a chunk of {len(chunk.data)} bytes; the limit is {MAX_FILE_CHUNK_BYTES}"
        )
    if chunk.size > MAX_FILE_BYTES or chunk.offset + len(chunk.data) > MAX_FILE_BYTES:
        size = max(chunk.size, chunk.offset + len(chunk.data))
        raise InvalidInputError(f"file {name!r} is {size} bytes; the limit is {MAX_FILE_BYTES}")
    sha256 = ""
    if chunk.last:
        if not _SHA256.fullmatch(chunk.sha256):
            raise InvalidInputError(f"file {name!r}: the last chunk needs the file's sha256 (64 hex digits)")
        sha256 = chunk.sha256.lower()
    return FileOp(name, chunk.version, chunk.offset, chunk.data, chunk.last, chunk.size, sha256)


def decode_timing(timing: records_pb2.Timing) -> TimingOp:
    return TimingOp(
        check_time(timing.runtime, "runtime"), check_time(timing.tracked_seconds, "tracked_seconds")
    )


CaptureOp = SystemOp | MetadataOp | OutputOp | FileOp | TimingOp


def decode_capture(record: records_pb2.Record, kind: str) -> CaptureOp | None:
    """The op of a capture record (``kind`` names its oneof field), None when it changes nothing."""
    if kind == "system":
        return decode_system(record.system)
    if kind == "metadata":
        return decode_metadata(record.metadata)
    if kind == "output":
        return decode_output(record.output)
    if kind == "file":
        return decode_file(record.file)
    if kind == "timing":
        return decode_timing(record.timing)
    raise InvalidInputError("record has no content (unknown or missing kind)")
