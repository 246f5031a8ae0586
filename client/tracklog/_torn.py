"""A torn end whose writer is gone for good is a loss, and the spool says so.

Recovery cuts a spool's torn end (bytes after the last whole frame: a write cut short by a crash, or
a file cut by something else) so that appends can go on. While the spool's writer may still send
those frames again (a training process whose daemon restarted resends what was not acked), the cut
loses nothing. When no one can (the training process is gone; the daemon's own spool, whose writer
is the daemon that crashed; an offline run that ended), the frames in that end are lost, and the
bytes alone cannot tell whether they had been acked. So the new writer appends, in the place of
the first lost frame, a ``FramesLost`` record: the spool keeps consecutive seqs, the sync sends it
like any frame, and the store notes the loss on the run (``tracklog runs`` shows it).

Invariant: only the writer that opened the spool, before it appends anything else, seals it (the
recovery it found must still describe the spool's end), and only once.
"""

from __future__ import annotations

from tracklog._spool import MAGIC, SpoolWriter, rows_text
from tracklog.v1 import records_pb2


def torn_end(writer: SpoolWriter) -> records_pb2.FramesLost | None:
    """What the torn end ``writer`` cut at its opening lost, if it cut one and nothing followed."""
    recovery = writer.recovery
    if (
        not recovery.truncated_bytes
        or recovery.good_bytes < len(MAGIC)
        or writer.last_seq != recovery.last_seq
    ):
        return None  # nothing cut; only part of the magic (no frame); or appends came since
    seq = writer.last_seq + 1
    return records_pb2.FramesLost(
        file=writer.path.name,
        first_seq=seq,
        last_seq=seq,
        # A lower bound: the cut frame's rows if its header survived; frames after it may have been
        # lost too (a cut file), which the bytes cannot tell.
        rows=recovery.tail_rows,
        rows_known=False,
        bytes=recovery.truncated_bytes,
        reason=f"the end of the file after frame {seq - 1} was cut short ({recovery.tail_reason}) and "
        "its writer is gone",
    )


def seal_torn_end(writer: SpoolWriter) -> records_pb2.FramesLost | None:
    """Appends (and fsyncs) the ``FramesLost`` of ``writer``'s torn end, when its writer is gone for
    good; returns it (None: nothing to seal). Raises OSError when the disk refuses."""
    lost = torn_end(writer)
    if lost is None:
        return None
    writer.append([(lost.first_seq, records_pb2.Record(lost=lost).SerializeToString())])
    writer.sync()
    return lost


def describe(lost: records_pb2.FramesLost) -> str:
    """One line: the file, the first frame lost, the rows, the bytes."""
    rows = rows_text(lost.rows, lost.rows_known)
    return (
        f"{lost.file}: frame {lost.first_seq} and any after it lost ({rows}); {lost.bytes} bytes "
        f"cut from its end: {lost.reason}"
    )
