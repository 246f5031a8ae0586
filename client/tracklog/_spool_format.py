"""The spool's format: its constants, its frames, what a reader reports, and the errors of a spool.

Shared by the reader and writer (``_spool``) and the reader of the first format (``_spool_v1``); the
layout itself is described in ``_spool``'s docstring. Standard library only.
"""

from __future__ import annotations

import errno
import struct
import zlib
from dataclasses import dataclass

MAGIC = b"TLSPOOL2"
MAGIC_V1 = b"TLSPOOL1"
MARKER = b"\xa7TLF"
HEADER = struct.Struct("<4sIIQII")
_HEADER_BODY = struct.Struct("<4sIIQI")  # what the header CRC covers
HEADER_V1 = struct.Struct("<IIQ")
MAX_FRAME_BYTES = 64 * 1024 * 1024
SEARCH_CHUNK = 1 << 20  # bytes a reader searches at a time for the next good frame

# The errors a full or failing disk gives a write, an ftruncate or an fsync.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})


class SpoolError(Exception):
    """A spool cannot be used: not a spool, a gap in sequence numbers, an oversized frame, or a spool
    another process is writing."""


class SpoolBusy(SpoolError):
    """The spool's lock is held: another writer (a process, or another writer in this one) has it."""


@dataclass(frozen=True, slots=True)
class FrameAt:
    seq: int
    payload: bytes
    end: int  # file offset just past this frame: where a reader resumes
    rows: int = 0  # history rows, as the header tells (0 for other kinds, and in TLSPOOL1 spools)


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes of a spool that could not be read, between two good frames (or the magic and one).

    ``first_seq``..``last_seq`` (inclusive) are the frames lost; none when the damage lies between two
    consecutive frames (``first_seq > last_seq``: only bytes were skipped, e.g. a damaged magic).
    ``rows`` counts the history rows of the lost frames whose headers could still be read;
    ``rows_known`` is False when some lost frame's header could not.
    """

    file: str  # the spool's file name
    first_seq: int
    last_seq: int
    rows: int
    rows_known: bool
    start: int  # file offsets of the skipped bytes
    end: int
    reason: str

    @property
    def frames(self) -> int:
        return max(0, self.last_seq - self.first_seq + 1)

    @property
    def bytes(self) -> int:
        return self.end - self.start

    def describe(self) -> str:
        """One line for a log or a terminal."""
        if not self.frames:
            lost = "no frame lost"
        else:
            span = f"{self.first_seq}" if self.frames == 1 else f"{self.first_seq}-{self.last_seq}"
            lost = (
                f"frame{'s' if self.frames > 1 else ''} {span} lost ({rows_text(self.rows, self.rows_known)})"
            )
        return f"{self.file}: {lost}; {self.bytes} damaged bytes at offset {self.start}: {self.reason}"


def rows_text(rows: int, known: bool) -> str:
    """How many history rows were lost, in words: exact, a lower bound, or unknown."""
    if known:
        return f"{rows} history rows"
    return f"at least {rows} history rows" if rows else "an unknown number of history rows"


@dataclass(frozen=True, slots=True)
class Recovery:
    last_seq: int
    good_bytes: int
    truncated_bytes: int  # a torn end, cut
    damage: tuple[Damage, ...] = ()  # found before the end, left in place
    tail_reason: str = ""
    tail_rows: int = 0  # history rows of the cut frame, as far as its header tells


def history_rows(payload: bytes) -> int:
    """The rows of a serialized ``Record`` holding a history batch, else 0, read from its first bytes.

    Protobuf writes known fields in field-number order, so a history record starts with the tag of
    ``Record.history`` (field 2, length-delimited) and the batch with ``HistoryBatch.steps`` (field 1):
    8 bytes per row. Anything else, or anything malformed, counts 0.
    """
    if not payload or payload[0] != 0x12:
        return 0
    _, pos = _varint(payload, 1)
    if pos >= len(payload) or payload[pos] != 0x0A:
        return 0
    length, _ = _varint(payload, pos + 1)
    return length // 8


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return 0, len(data)


def frame_bytes(seq: int, payload: bytes, rows: int) -> bytes:
    """One frame as it lies in a spool (header and payload). Raises SpoolError when oversized."""
    if len(payload) > MAX_FRAME_BYTES:
        raise SpoolError(f"frame {seq} is {len(payload)} bytes; the limit is {MAX_FRAME_BYTES}")
    body = _HEADER_BODY.pack(MARKER, len(payload), rows, seq, zlib.crc32(payload))
    return body + struct.pack("<I", zlib.crc32(body)) + payload


def check_header(data: bytes) -> tuple[int, int, int, int] | None:
    """``(length, rows, seq, payload crc)`` of a header that checks, else None."""
    if len(data) < HEADER.size:
        return None
    marker, length, rows, seq, payload_crc, header_crc = HEADER.unpack_from(data)
    if marker != MARKER or zlib.crc32(data[: _HEADER_BODY.size]) != header_crc or length > MAX_FRAME_BYTES:
        return None
    return length, rows, seq, payload_crc
