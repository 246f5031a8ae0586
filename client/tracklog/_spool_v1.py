"""The first spool format, ``TLSPOOL1``: still read, and rewritten in the current one by a writer.

A ``TLSPOOL1`` frame is a 16-byte header ``<u32 length, u32 crc32(seq + payload), u64 seq>`` and its
payload, with no marker: a reader that meets damage finds the next frame by searching for the bytes
of the next few seqs where a header's seq field would be. The reader here yields the same items as
the current format's (``FrameAt``, ``Damage``); ``Damage`` rows are unknown (no rows in the header).
A writer that opens such a spool rewrites it in the current format first (``upgrade``).
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path

from tracklog._spool_format import (
    HEADER_V1,
    MAGIC,
    MAX_FRAME_BYTES,
    SEARCH_CHUNK,
    Damage,
    FrameAt,
    frame_bytes,
    history_rows,
)

Pread = Callable[[int, int], bytes]  # (offset, size) -> the bytes there (fewer at the end)
Tail = tuple[int, str]  # where bytes that are no whole frame begin, and why


def first_frame_checks(pread: Pread) -> bool:
    """Whether the file holds a whole, checking TLSPOOL1 frame 1 after its magic."""
    data = pread(len(MAGIC), HEADER_V1.size)
    if len(data) < HEADER_V1.size:
        return False
    length, crc, seq = HEADER_V1.unpack(data)
    if seq != 1 or length > MAX_FRAME_BYTES:
        return False
    payload = pread(len(MAGIC) + HEADER_V1.size, length)
    return len(payload) == length and zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seq))) == int(crc)


def read(
    pread: Pread, size: int, name: str, offset: int, last_seq: int
) -> Generator[FrameAt | Damage, None, Tail | None]:
    """The frames and damage from ``offset`` on (``last_seq``: the seq just before it); returns the
    tail (bytes no good frame follows), or None when the file ends on a whole frame."""
    while True:
        header = pread(offset, HEADER_V1.size)
        if not header:
            return None
        frame = _frame(pread, size, offset, header)
        if frame is not None and frame[0] == last_seq + 1:
            seq, payload = frame
            offset += HEADER_V1.size + len(payload)
            last_seq = seq
            yield FrameAt(seq, payload, offset, history_rows(payload))
            continue
        found = _resync(pread, size, offset, last_seq)
        if found is None:
            return offset, f"a bad or incomplete frame after frame {last_seq}"
        resume, seq = found
        reason = f"a bad frame after frame {last_seq} at offset {offset}"
        yield Damage(name, last_seq + 1, seq - 1, 0, False, offset, resume, reason)
        last_seq = seq - 1
        offset = resume


def _frame(pread: Pread, size: int, offset: int, header: bytes) -> tuple[int, bytes] | None:
    if len(header) < HEADER_V1.size:
        return None
    length, crc, seq = HEADER_V1.unpack(header)
    if length > min(MAX_FRAME_BYTES, size - offset - HEADER_V1.size):
        return None
    payload = pread(offset + HEADER_V1.size, length)
    if len(payload) < length or zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seq))) != crc:
        return None
    return seq, payload


def _resync(pread: Pread, size: int, damaged: int, last_seq: int) -> tuple[int, int] | None:
    """The first good frame after ``damaged``: found by searching for the little-endian bytes of the
    next few seqs where a header's seq field would be. (An older daemon left a partial frame when a
    write failed and wrote the client's resend of the same seq after it: that frame is found here.)"""
    expected = last_seq + 1
    needles = [struct.pack("<Q", seq) for seq in range(expected, expected + 16)]
    pos = damaged + 1
    while pos < size:
        chunk = pread(pos, SEARCH_CHUNK + HEADER_V1.size)
        hits = sorted(at for needle in needles for at in _all(chunk, needle, limit=SEARCH_CHUNK))
        for at in hits:
            start = pos + at - 8  # the seq field is the header's last 8 bytes
            if start <= damaged:
                continue
            frame = _frame(pread, size, start, pread(start, HEADER_V1.size))
            if frame is not None and frame[0] >= expected:
                return start, frame[0]
        pos += SEARCH_CHUNK
    return None


def _all(data: bytes, needle: bytes, limit: int) -> Iterator[int]:
    """Every offset below ``limit`` where ``needle`` starts in ``data``."""
    at = data.find(needle)
    while 0 <= at < limit:
        yield at
        at = data.find(needle, at + 1)


def upgrade(path: Path, good: Iterable[FrameAt], keep_original: bool) -> int:
    """Rewrites a TLSPOOL1 spool (already cut at its last good frame) in the current format, from its
    ``good`` frames: written beside it, fsynced, locked, then renamed over it; returns the new file's
    descriptor, locked. The good frames keep their seqs, so frames lost to damage stay a visible
    gap; a damaged original is kept as ``<name>.v1-damaged``. Raises OSError."""
    tmp = path.with_name(path.name + f".{os.getpid()}.upgrade")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        data = b"".join([MAGIC, *(frame_bytes(f.seq, f.payload, f.rows) for f in good)])
        offset = 0
        while offset < len(data):
            offset += os.pwrite(fd, data[offset:], offset)
        os.fsync(fd)
        if keep_original:
            backup = path.with_name(path.name + ".v1-damaged")
            backup.unlink(missing_ok=True)
            os.link(path, backup)
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return fd
