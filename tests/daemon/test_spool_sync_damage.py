"""Syncing a damaged spool: every readable frame reaches the store once, and every damaged one is
reported to it (a FramesLost at its seq), never skipped silently."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracklog._spool import SpoolWriter, frames, synced_path
from tracklogd import sync_spool
from tracklogd.testing import FakeStoreServer, history, make_ref, run_start

KEY = "me/proj/run1"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(2, 30), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=3))
def test_every_readable_frame_is_stored_once_and_every_damaged_one_is_reported_to_the_store(
    tmp_path: Path, store: FakeStoreServer, count: int, flips: list[int]
) -> None:
    spool = tmp_path / "run-run1.tlog"
    spool.unlink(missing_ok=True)
    synced_path(spool).unlink(missing_ok=True)
    store.store.forget(KEY)
    writer = SpoolWriter(spool)
    writer.append([(1, run_start(make_ref())), *((seq, history(seq, x=1.0)) for seq in range(2, count + 2))])
    writer.close()
    bounds = [(frame.seq, frame.end) for frame in frames(spool)]
    data = bytearray(spool.read_bytes())
    first_end = bounds[0][1]  # frame 1, the RunStart, stays whole: its loss has a test of its own
    hit = {first_end + at % (len(data) - first_end) for at in flips}
    for at in hit:
        data[at] ^= 0x01
    spool.write_bytes(bytes(data))
    starts = {seq: (bounds[i - 1][1] if i else 8) for i, (seq, _) in enumerate(bounds)}
    touched = {seq for seq, end in bounds if any(starts[seq] <= at < end for at in hit)}

    result = sync_spool(spool, store.target)

    readable = [seq for seq, _ in bounds if seq not in touched]
    records = dict(zip(store.store.seqs(KEY), store.store.records(KEY), strict=True))
    stored = [seq for seq, record in records.items() if record.WhichOneof("kind") != "lost"]
    lost: set[int] = set()
    for record in records.values():
        if record.WhichOneof("kind") == "lost":
            lost.update(range(record.lost.first_seq, record.lost.last_seq + 1))
    assert stored == readable
    assert lost == {seq for seq in touched if seq < readable[-1]}  # the rest is the spool's torn end
    assert sum(d.frames for d in result.damage) == len(lost)
