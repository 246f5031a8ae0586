"""The run spool: an append-only file of framed, CRC-checked records that a reader can resynchronise on.

Layout (``TLSPOOL2``): an 8-byte magic, then frames. A frame is a 28-byte header
``<4s marker, u32 length, u32 rows, u64 seq, u32 payload crc32, u32 header crc32>`` followed by
``length`` bytes of payload (a serialized ``tracklog.v1.Record``). ``rows`` is the number of history
rows in the record (0 for other kinds), so that a frame whose payload is damaged is still counted. The
header CRC covers the 24 header bytes before it, so a header can be trusted on its own: a reader that
meets damage searches forward for the marker and takes the first header that checks, carries a later
seq and whose payload checks too. Spools of the first format (``TLSPOOL1``: a 16-byte header
``<u32 length, u32 crc32(seq + payload), u64 seq>``, no marker) are still read; a writer that opens
one rewrites it in the new format first.

Invariants: seqs in a spool are consecutive from 1; a frame is either wholly valid or not part of the
spool. Exactly one writer per spool, enforced by the OS (``flock``); readers (sync) take no lock and
may run while the writer appends. What a reader does with bad bytes:

* bad bytes followed by a good frame are *damage*: ``scan`` yields a :class:`Damage` naming the lost
  seqs, the rows their headers tell of, the bytes and the reason, and goes on with the good frame.
  Nothing is cut: the bytes stay on disk for whoever wants to look at them.
* bad bytes with no good frame after them are the *tail*: a write still in progress (for a reader
  racing the writer) or cut short by a crash. ``scan`` stops before it quietly; only ``recover``,
  run by the writer holding the lock, cuts it.

This module is shared by the SDK (offline mode), the daemon and ``tracklog sync``; it uses only the
standard library so that ``import tracklog`` stays light.
"""

from __future__ import annotations

import errno
import fcntl
import os
import zlib
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from tracklog import _spool_v1
from tracklog._spool_format import (
    DISK_ERRNOS,
    HEADER,
    HEADER_V1,
    MAGIC,
    MAGIC_V1,
    MARKER,
    MAX_FRAME_BYTES,
    SEARCH_CHUNK,
    Damage,
    FrameAt,
    Recovery,
    SpoolBusy,
    SpoolError,
    check_header,
    frame_bytes,
    history_rows,
    rows_text,
)

# The format's names are part of this module's surface (``from tracklog._spool import FrameAt``).
__all__ = [
    "DISK_ERRNOS",
    "HEADER",
    "HEADER_V1",
    "MAGIC",
    "MAGIC_V1",
    "MARKER",
    "MAX_FRAME_BYTES",
    "Damage",
    "FileOps",
    "FrameAt",
    "OsFileOps",
    "Recovery",
    "Scan",
    "SpoolBusy",
    "SpoolError",
    "SpoolWriter",
    "first_header_seq",
    "frame_bytes",
    "frames",
    "history_rows",
    "lock_holder",
    "read_synced",
    "recover",
    "rows_text",
    "scan",
    "synced_path",
    "write_synced",
]


def first_header_seq(path: str | os.PathLike[str]) -> int:
    """The seq in the first frame header of a spool when that header checks, else 0 (also when the
    file cannot be read). A rescue file (``_rescue``) starts at any seq; a spool at 1."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + HEADER.size)
    except OSError:
        return 0
    header = check_header(head[len(MAGIC) :])
    return header[2] if header is not None else 0


class Scan:
    """The frames of a spool from ``start`` on, with damage reported in place (see the module doc).

    Iterate it for :class:`FrameAt` and :class:`Damage` items in file order; use it as a context
    manager (or exhaust it) to close the file. ``after_seq`` is the seq of the frame just before
    ``start`` (0 at the beginning). Once exhausted: ``good_end`` is the offset just past the last good
    frame, ``last_seq`` its seq, ``size`` the file size read, ``tail_bytes``/``tail_reason`` what
    follows that no good frame does (a write in progress or a torn end).
    Raises SpoolError when the file is not a spool, OSError when it cannot be read.
    """

    def __init__(self, path: str | os.PathLike[str], start: int | None = None, after_seq: int = 0) -> None:
        self.path = Path(path)
        self.last_seq = after_seq
        self.good_end = 0
        self.size = 0
        self.tail_bytes = 0
        self.tail_reason = ""
        self.tail_rows = 0  # history rows of the frame the tail begins, as far as its header tells
        self.version = 2
        self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed by close() / exhaustion
        self._items = self._read(start)

    def __iter__(self) -> Iterator[FrameAt | Damage]:
        return self

    def __next__(self) -> FrameAt | Damage:
        try:
            return next(self._items)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Scan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._items.close()
        self._file.close()

    def frames(self) -> Iterator[FrameAt]:
        """Only the good frames (for callers that account for damage elsewhere)."""
        for item in self:
            if isinstance(item, FrameAt):
                yield item

    # -- reading -----------------------------------------------------------------------------------

    def _pread(self, offset: int, size: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(size)

    def _read(self, start: int | None) -> Generator[FrameAt | Damage]:
        self.size = os.fstat(self._file.fileno()).st_size
        head = self._pread(0, len(MAGIC))
        damaged_magic = head not in (MAGIC, MAGIC_V1)
        if damaged_magic:
            if len(head) < len(MAGIC) and (MAGIC.startswith(head) or MAGIC_V1.startswith(head)):
                self.good_end = len(head)
                self.tail_bytes, self.tail_reason = len(head), "a spool whose magic is not fully written"
                return  # created, its magic not yet fully written: no frames
            if check_header(self._pread(len(MAGIC), HEADER.size)) is None:
                if _spool_v1.first_frame_checks(self._pread):
                    head = MAGIC_V1
                elif self._resync(len(MAGIC)) is None:
                    # No good frame anywhere: not a spool (or nothing of it is left to read).
                    raise SpoolError(f"{self.path} is not a tracklog spool")
                # Else a spool whose start (magic and first header) is damaged: read on from the
                # first good frame, reporting what was skipped.
        self.version = 1 if head == MAGIC_V1 else 2
        offset = len(MAGIC) if start is None or start < len(MAGIC) else start
        self.good_end = offset
        if damaged_magic and offset == len(MAGIC):
            reason = f"the file magic is damaged ({head!r})"
            yield Damage(self.path.name, 1, 0, 0, True, 0, len(MAGIC), reason)
        if self.version == 1:
            yield from self._read_v1(offset)
        else:
            yield from self._read_v2(offset)

    def _read_v1(self, offset: int) -> Generator[FrameAt | Damage]:
        items = _spool_v1.read(self._pread, self.size, self.path.name, offset, self.last_seq)
        while True:
            try:
                item = next(items)
            except StopIteration as stop:
                if stop.value is not None:
                    self._tail(*stop.value)
                return
            if isinstance(item, FrameAt):
                self.last_seq, self.good_end = item.seq, item.end
            else:
                self.last_seq = item.last_seq
            yield item

    def _read_v2(self, offset: int) -> Iterator[FrameAt | Damage]:
        while True:
            data = self._pread(offset, HEADER.size)
            if not data:
                return
            header = check_header(data)
            if header is not None and header[2] == self.last_seq + 1:
                length, rows, seq, payload_crc = header
                payload = self._pread(offset + HEADER.size, length)
                if len(payload) < length:
                    self._tail(offset, f"frame {seq} is incomplete ({len(payload)} of {length} bytes)")
                    return
                if zlib.crc32(payload) == payload_crc:
                    offset += HEADER.size + length
                    self.last_seq, self.good_end = seq, offset
                    yield FrameAt(seq, payload, offset, rows)
                    continue
                reason = f"frame {seq} fails its payload crc"
            elif header is not None:
                reason = f"frame {header[2]} where {self.last_seq + 1} was expected"
            elif len(data) < HEADER.size:
                self._tail(offset, "an incomplete frame header")
                return
            else:
                reason = "a damaged frame header"
            found = self._resync(offset)
            if found is None:
                self._tail(offset, reason)
                return
            resume, seq, rows, known = found
            first = self.last_seq + 1
            reason = f"{reason} at offset {offset}"
            yield Damage(self.path.name, first, seq - 1, rows, known, offset, resume, reason)
            self.last_seq = seq - 1  # the good frame at ``resume`` comes next
            offset = resume

    def _resync(self, damaged: int) -> tuple[int, int, int, bool] | None:
        """The next good frame from ``damaged`` on: ``(offset, seq, rows lost before it, rows known)``.

        A good frame has the marker, a header that checks, a seq above the last good one and a payload
        that checks. Headers that check but carry a bad payload count their rows as lost (and their
        length, which the header CRC vouches for, is skipped); a lost seq without such a header makes
        the count a lower bound.
        """
        expected = self.last_seq + 1
        rows_of: dict[int, int] = {}
        pos: int | None = damaged
        while pos is not None:
            header = check_header(self._pread(pos, HEADER.size))
            if header is None or header[2] < expected:
                pos = self._find_marker(pos + 1)
                continue
            length, rows, seq, payload_crc = header
            payload = self._pread(pos + HEADER.size, length)
            if len(payload) < length:
                pos = self._find_marker(pos + 1)  # cut short (or a stray header): look further
                continue
            if zlib.crc32(payload) == payload_crc:
                lost = range(expected, seq)
                known = all(s in rows_of for s in lost)
                if len(lost) == 1 and not known and pos - damaged > HEADER.size:
                    # One frame whose header is damaged: its payload lies between its header and
                    # the good frame, and its first bytes tell the rows (a lower bound: unverified).
                    rows_of[expected] = history_rows(self._pread(damaged + HEADER.size, 24))
                return pos, seq, sum(rows_of.get(s, 0) for s in lost), known
            rows_of[seq] = rows
            pos = self._find_marker(pos + HEADER.size + length)
        return None

    def _find_marker(self, pos: int) -> int | None:
        while pos < self.size:
            chunk = self._pread(pos, SEARCH_CHUNK + len(MARKER) - 1)
            if len(chunk) < len(MARKER):
                return None
            at = chunk.find(MARKER)
            if at >= 0:
                return pos + at
            pos += len(chunk) - len(MARKER) + 1
        return None

    def _tail(self, offset: int, reason: str) -> None:
        self.tail_bytes = max(0, self.size - offset)
        self.tail_reason = reason
        # What the tail's first header (if it checks) tells of the frame cut short: its rows.
        header = check_header(self._pread(offset, HEADER.size)) if self.version == 2 else None
        if header is not None and header[2] == self.last_seq + 1:
            self.tail_rows = header[1]


def scan(path: str | os.PathLike[str], start: int | None = None, after_seq: int = 0) -> Scan:
    """The frames and damage of a spool from offset ``start`` (see :class:`Scan`)."""
    return Scan(path, start, after_seq)


def frames(path: str | os.PathLike[str]) -> Iterator[FrameAt]:
    """Every good frame of a spool, damage skipped (for callers that only need what is there)."""
    with scan(path) as found:
        yield from found.frames()


def recover(path: str | os.PathLike[str]) -> Recovery:
    """Cuts a torn end so that the spool ends at its last good frame; damage before the end stays in
    place and is reported. Creates nothing. Only for the spool's writer (it holds the lock)."""
    damage: list[Damage] = []
    with scan(path) as found:
        for item in found:
            if isinstance(item, Damage):
                damage.append(item)
    good, size = found.good_end, found.size
    if size < len(MAGIC) and found.tail_bytes:
        good = 0  # only part of the magic: start the file again
    if good < size:
        with open(path, "r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())
    tail = (found.tail_reason, found.tail_rows)
    return Recovery(found.last_seq, good, size - good, tuple(damage), *tail)


class FileOps(Protocol):
    """The system calls a writer makes on its spool: a seam for tests of failing disks (EIO, EROFS)."""

    def pwrite(self, fd: int, data: bytes, offset: int) -> int: ...

    def ftruncate(self, fd: int, size: int) -> None: ...

    def fsync(self, fd: int) -> None: ...


class OsFileOps:
    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)


def lock_holder(path: str | os.PathLike[str]) -> str:
    """Who holds the lock on ``path``, as far as the OS tells (Linux: /proc/locks), else ""."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[0].endswith("->"):
            continue
        dev, _, ino = parts[5].rpartition(":")
        major, _, minor = dev.partition(":")
        try:
            same = int(ino) == st.st_ino and os.makedev(int(major, 16), int(minor, 16)) == st.st_dev
        except ValueError:
            continue
        if same:
            pid = parts[4]
            try:
                with open(f"/proc/{pid}/comm") as f:
                    return f"process {pid} ({f.read().strip()})"
            except OSError:
                return f"process {pid}"
    return ""


class SpoolWriter:
    """Appends frames to one run's spool; the spool's one writer while open. Not thread-safe: one
    owner thread (or a caller-held lock) per writer.

    Opening takes an exclusive ``flock`` on the file (SpoolError names the holder when another process
    or writer has it), upgrades a TLSPOOL1 spool, and cuts a torn end (``recovery``).

    An append is atomic as a reader sees it: the frames are written with ``pwrite`` at the end of the
    last good frame; if any of it fails (ENOSPC, EDQUOT, EIO, EROFS ...) the file is cut back to that
    end, ``last_seq`` stays where it was and the OSError propagates: the frames are not in the spool
    and must not be acked. If the cut fails too, the next append cuts first (and fails if it cannot).
    """

    def __init__(self, path: str | os.PathLike[str], *, ops: FileOps | None = None) -> None:
        self.path = Path(path)
        self._ops: FileOps = ops or OsFileOps()
        self._fd = self._open_locked()
        try:
            self.recovery = self._prepare()
        except BaseException:
            os.close(self._fd)
            raise
        self.last_seq = self.recovery.last_seq
        self.synced_seq = self.last_seq  # the last frame known fsynced (what recovery found, at open)
        self._end = os.fstat(self._fd).st_size  # the end of the last good frame
        self._cut_pending = False  # a failed append left bytes past ``_end`` that a cut did not remove
        self._dirty = False

    def _open_locked(self) -> int:
        while True:
            # 0600: the run's first frame holds its writer token, the secret the store checks.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = lock_holder(self.path) or "another writer"
                raise SpoolBusy(f"{self.path} is being written by {holder}; a spool has one writer") from None
            except OSError:
                os.close(fd)
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # the file was replaced (an upgrade) after we opened it: open the new one

    def _prepare(self) -> Recovery:
        head = os.pread(self._fd, len(MAGIC), 0)
        if len(head) < len(MAGIC) and (MAGIC.startswith(head) or MAGIC_V1.startswith(head)):
            cut = len(head)
            self._ops.ftruncate(self._fd, 0)
            self._write_all(MAGIC, 0)
            return Recovery(0, len(MAGIC), cut, (), "a spool whose magic is not fully written" if cut else "")
        recovery = recover(self.path)
        if head == MAGIC_V1:
            self._upgrade(keep_original=bool(recovery.damage))
        return recovery

    def _upgrade(self, keep_original: bool) -> None:
        """Rewrites a TLSPOOL1 spool in the current format (``_spool_v1.upgrade``) and writes the new
        file from now on."""
        fd = _spool_v1.upgrade(self.path, frames(self.path), keep_original)
        os.close(self._fd)
        self._fd = fd

    def _write_all(self, data: bytes, offset: int) -> None:
        done = 0
        while done < len(data):
            # A short write (the disk filled up part way) copies the rest once; the usual write is whole.
            written = self._ops.pwrite(self._fd, data[done:] if done else data, offset + done)
            if written <= 0:
                raise OSError(errno.EIO, "write returned nothing")
            done += written

    def append(self, frames: Iterable[tuple[int, bytes] | tuple[int, bytes, int]]) -> int:
        """Writes frames (``(seq, payload)``, or ``(seq, payload, rows)`` with the history rows the
        client counted) in one go; skips seqs already held; returns the new last seq.

        Raises SpoolError on a gap, before writing anything; OSError when the disk refuses the write
        (nothing of it stays in the spool).
        """
        chunks: list[bytes] = []
        expected = self.last_seq + 1
        for frame in frames:
            seq, payload = frame[0], frame[1]
            if seq < expected:
                continue  # a resend of a frame we hold
            if seq != expected:
                raise SpoolError(f"{self.path.name}: expected frame {expected}, got {seq}")
            rows = frame[2] if len(frame) > 2 else history_rows(payload)
            chunks.append(frame_bytes(seq, payload, rows or 0))
            expected += 1
        if not chunks:
            return self.last_seq
        if self._cut_pending:
            self._ops.ftruncate(self._fd, self._end)
            self._cut_pending = False
        data = b"".join(chunks)
        try:
            self._write_all(data, self._end)
        except OSError:
            try:
                self._ops.ftruncate(self._fd, self._end)
            except OSError:
                self._cut_pending = True
            raise
        self._end += len(data)  # in the OS page cache: survives the death of this process
        self.last_seq = expected - 1
        self._dirty = True
        return self.last_seq

    @property
    def dirty(self) -> bool:
        """Frames were appended since the last successful ``sync``."""
        return self._dirty

    def sync(self) -> None:
        """Makes everything appended so far survive a machine crash. Raises OSError (and stays
        dirty, so the next call tries again) when the disk refuses."""
        if self._dirty:
            last = self.last_seq
            self._ops.fsync(self._fd)
            self._dirty = False
            self.synced_seq = last

    def close(self) -> None:
        """Syncs and closes, releasing the lock; closes even when the sync fails (and re-raises)."""
        if self._fd < 0:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0


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
