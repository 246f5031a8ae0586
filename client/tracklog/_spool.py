"""The run spool: an append-only file of CRC-checked, length-prefixed frames.

Layout: an 8-byte magic, then frames. A frame is a 16-byte header ``<u32 length, u32 crc32, u64 seq>``
followed by ``length`` bytes of payload (a serialized ``tracklog.v1.Record``). The CRC covers the seq
and the payload, so a torn or corrupted tail is detected and cut at the last good frame.

Invariants: seqs in a spool are consecutive from 1; a frame is either wholly valid or not part of the
spool. Only one writer per spool (the daemon, or the training process in offline mode). Readers
(sync) may run while the writer appends: they stop at the first incomplete frame.

This module is shared by the SDK (offline mode), the daemon and ``tracklog sync``; it uses only the
standard library so that ``import tracklog`` stays light.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"TLSPOOL1"
HEADER = struct.Struct("<IIQ")
MAX_FRAME_BYTES = 64 * 1024 * 1024


class SpoolError(Exception):
    """A spool cannot be used: wrong magic, a gap in sequence numbers, or an oversized frame."""


@dataclass(frozen=True, slots=True)
class FrameAt:
    seq: int
    payload: bytes
    end: int  # file offset just past this frame: where a reader resumes


@dataclass(frozen=True, slots=True)
class Recovery:
    last_seq: int
    good_bytes: int
    truncated_bytes: int


def _frame_bytes(seq: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_BYTES:
        raise SpoolError(f"frame {seq} is {len(payload)} bytes; the limit is {MAX_FRAME_BYTES}")
    seq_bytes = struct.pack("<Q", seq)
    crc = zlib.crc32(payload, zlib.crc32(seq_bytes))
    return HEADER.pack(len(payload), crc, seq) + payload


def scan(path: str | os.PathLike[str], start: int = len(MAGIC)) -> Iterator[FrameAt]:
    """Yields the valid frames from offset ``start``; stops quietly at a torn or corrupt tail."""
    with open(path, "rb") as f:
        if start == len(MAGIC):
            magic = f.read(len(MAGIC))
            if magic != MAGIC:
                if len(magic) < len(MAGIC) and MAGIC.startswith(magic):
                    return  # created but its magic not yet fully written
                raise SpoolError(f"{os.fspath(path)} is not a tracklog spool")
        else:
            f.seek(start)
        offset = start
        while True:
            header = f.read(HEADER.size)
            if len(header) < HEADER.size:
                return
            length, crc, seq = HEADER.unpack(header)
            if length > MAX_FRAME_BYTES:
                return
            payload = f.read(length)
            if len(payload) < length:
                return
            if zlib.crc32(payload, zlib.crc32(struct.pack("<Q", seq))) != crc:
                return
            offset += HEADER.size + length
            yield FrameAt(seq, payload, offset)


def recover(path: str | os.PathLike[str]) -> Recovery:
    """Cuts a torn tail so that the spool ends at its last good frame. Creates nothing."""
    size = os.path.getsize(path)
    last_seq, good = 0, len(MAGIC)
    for frame in scan(path):
        last_seq, good = frame.seq, frame.end
    if size < len(MAGIC):
        good = 0  # only part of the magic: start the file again
    if good < size:
        with open(path, "r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())
    return Recovery(last_seq, good, size - good)


class SpoolWriter:
    """Appends frames to one run's spool. Not thread-safe: one owner thread per spool."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.recovery = Recovery(0, 0, 0)
        if self.path.exists():
            self.recovery = recover(self.path)
        # 0600: the run's first frame holds its writer token, the secret the store checks.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "ab")
        if self._file.tell() == 0:
            self._file.write(MAGIC)
            self._file.flush()
        self.last_seq = self.recovery.last_seq
        self._dirty = False

    def append(self, frames: Iterable[tuple[int, bytes]]) -> int:
        """Writes frames in one ``write`` call; skips seqs already held; returns the new last seq.

        Raises SpoolError on a gap, before writing anything.
        """
        chunks: list[bytes] = []
        expected = self.last_seq + 1
        for seq, payload in frames:
            if seq < expected:
                continue  # a resend of a frame we hold
            if seq != expected:
                raise SpoolError(f"{self.path.name}: expected frame {expected}, got {seq}")
            chunks.append(_frame_bytes(seq, payload))
            expected += 1
        if chunks:
            self._file.write(b"".join(chunks))
            self._file.flush()  # into the OS: survives the death of this process
            self.last_seq = expected - 1
            self._dirty = True
        return self.last_seq

    def sync(self) -> None:
        """Makes everything appended so far survive a machine crash."""
        if self._dirty:
            os.fsync(self._file.fileno())
            self._dirty = False

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


def synced_path(spool: str | os.PathLike[str]) -> Path:
    return Path(spool).with_suffix(".synced")


def read_synced(spool: str | os.PathLike[str]) -> int:
    """The highest seq the store server has acknowledged for this spool (0 if none)."""
    try:
        return int(synced_path(spool).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def write_synced(spool: str | os.PathLike[str], seq: int) -> None:
    """Persists the sync high-water mark atomically (write, fsync, rename)."""
    target = synced_path(spool)
    # One temporary file per process: the daemon and `tracklog sync` may both push one spool.
    tmp = target.with_suffix(f".synced.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(f"{seq}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
