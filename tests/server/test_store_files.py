"""Files saved with a run and console output, read back on SQLite and PostgreSQL: chunked uploads
across frames and batches, versions, sha256, incomplete uploads, order and limits; log pages."""

from __future__ import annotations

import hashlib
import os

import pytest

from tracklog_server import (
    InvalidInputError,
    OutputStream,
    RunFileNotFoundError,
    RunKey,
    RunNotFoundError,
    SqlAlchemyStore,
)
from tracklog_server.testing import FakeClock

from .helpers import (
    STDERR,
    STDOUT,
    RunWriter,
    file_chunk_record,
    file_records,
    output_record,
    read_file,
    refusal,
    start_record,
)

T0 = 1_700_000_000.0


@pytest.fixture
def started(store: SqlAlchemyStore, key: RunKey) -> RunWriter:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key)))
    return w


def test_a_file_sent_in_chunks_across_frames_and_batches_reads_back_exactly(
    store: SqlAlchemyStore, key: RunKey, started: RunWriter, clock: FakeClock
) -> None:
    data = os.urandom(10_000)
    chunks = file_records("model/weights.bin", 1, data, chunk=999)
    assert len(chunks) == 11
    store.ingest(key, started.frames(*chunks[:4]))
    clock.advance(5)
    store.ingest(key, started.frames(*chunks[4:9]))
    store.ingest(key, started.frames(*chunks[9:]))
    (info,) = store.list_files(key)
    assert (info.name, info.version, info.size, info.complete) == ("model/weights.bin", 1, 10_000, True)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.updated_at == clock()
    assert read_file(store, key, "model/weights.bin") == data
    assert read_file(store, key, "model/weights.bin", version=1) == data


def test_a_file_larger_than_a_page_comes_back_in_pieces_that_fit_a_message(
    store: SqlAlchemyStore, key: RunKey, started: RunWriter
) -> None:
    data = os.urandom(7 * 1024 * 1024 + 3)
    store.ingest(key, started.frames(*file_records("big.bin", 1, data, chunk=4 * 1024 * 1024)))
    info, pieces = store.read_file(key, "big.bin")
    got = list(pieces)
    assert all(len(p) <= 3 * 1024 * 1024 for p in got)
    assert len(got) >= 3
    assert b"".join(got) == data
    assert info.size == len(data)


def test_every_save_is_a_new_version_and_the_latest_complete_one_is_listed(
    store: SqlAlchemyStore, key: RunKey, started: RunWriter
) -> None:
    store.ingest(key, started.frames(*file_records("notes.txt", 1, b"first")))
    store.ingest(key, started.frames(*file_records("notes.txt", 2, b"second, longer")))
    third = file_records("notes.txt", 3, b"third version, still uploading", chunk=8)
    store.ingest(key, started.frames(*third[:2]))  # incomplete
    (info,) = store.list_files(key)
    assert (info.version, info.size, info.complete) == (2, 14, True)
    assert info.sha256 == hashlib.sha256(b"second, longer").hexdigest()
    assert read_file(store, key, "notes.txt") == b"second, longer"
    assert read_file(store, key, "notes.txt", version=1) == b"first"
    with pytest.raises(RunFileNotFoundError, match=r"version 3 of file 'notes\.txt' .* is still incomplete"):
        store.read_file(key, "notes.txt", version=3)
    store.ingest(key, started.frames(*third[2:]))
    assert store.list_files(key)[0].version == 3
    assert read_file(store, key, "notes.txt") == b"third version, still uploading"


def test_a_file_without_a_complete_version_is_listed_as_incomplete_and_cannot_be_read(
    store: SqlAlchemyStore, key: RunKey, started: RunWriter
) -> None:
    store.ingest(key, started.frames(*file_records("partial.bin", 1, b"0123456789", chunk=4)[:2]))
    (info,) = store.list_files(key)
    assert (info.name, info.version, info.complete, info.sha256, info.size) == (
        "partial.bin",
        1,
        False,
        "",
        10,
    )
    with pytest.raises(
        RunFileNotFoundError, match=r"file 'partial.bin' of run .* has no complete version yet"
    ):
        store.read_file(key, "partial.bin")
    with pytest.raises(RunFileNotFoundError, match=r"has no file 'other.bin'"):
        store.read_file(key, "other.bin")
    with pytest.raises(RunFileNotFoundError, match=r"has no version 9 of file 'partial.bin'"):
        store.read_file(key, "partial.bin", version=9)


def test_an_empty_file_is_one_empty_chunk(store: SqlAlchemyStore, key: RunKey, started: RunWriter) -> None:
    store.ingest(key, started.frames(*file_records("empty.txt", 1, b"")))
    (info,) = store.list_files(key)
    assert (info.size, info.complete, info.sha256) == (0, True, hashlib.sha256(b"").hexdigest())
    assert read_file(store, key, "empty.txt") == b""


def test_chunks_out_of_order_are_refused_and_the_rest_of_the_batch_is_kept(
    store: SqlAlchemyStore, key: RunKey, started: RunWriter
) -> None:
    chunks = file_records("a.bin", 1, b"abcdefghij", chunk=3)
    store.ingest(key, started.frames(chunks[0]))
    seq = started.seq
    result = store.ingest(key, [(seq + 1, output_record([(T0, STDOUT, "hi")])), (seq + 2, chunks[2])])
    assert "'a.bin' version 1: a chunk at offset 6, expected offset 3" in refusal(result, seq + 2)
    result = store.ingest(key, [(seq + 3, file_chunk_record(name="b.bin", version=1, offset=3, data=b"x"))])
    assert "no upload of it is in progress" in refusal(result, seq + 3)
    assert store.get_run(key).output_lines == 1
    store.ingest(key, [(seq + 4, chunks[1]), (seq + 5, chunks[2]), (seq + 6, chunks[3])])
    assert read_file(store, key, "a.bin") == b"abcdefghij"
    result = store.ingest(key, [(seq + 7, chunks[1])])  # a chunk of a version that is complete
    assert "no upload of it is in progress" in refusal(result, seq + 7)


def test_a_resumed_run_that_counts_versions_from_1_again_adds_new_versions(
    store: SqlAlchemyStore, key: RunKey, started: RunWriter
) -> None:
    # The first process saved output.log and died while sending a second file.
    store.ingest(key, started.frames(*file_records("output.log", 1, b"first process\n")))
    store.ingest(key, started.frames(*file_records("diff.patch", 1, b"--- a\n+++ b\n", chunk=4)[:1]))
    # The resumed process starts again at version 1 for both names.
    store.ingest(key, started.frames(start_record(key, resume="allow")))
    store.ingest(key, started.frames(*file_records("output.log", 1, b"second process\n")))
    store.ingest(key, started.frames(*file_records("diff.patch", 1, b"new diff", chunk=4)))
    files = {f.name: f for f in store.list_files(key)}
    assert (files["output.log"].version, files["diff.patch"].version) == (2, 2)
    assert read_file(store, key, "output.log", version=1) == b"first process\n"
    assert read_file(store, key, "output.log") == b"second process\n"
    assert read_file(store, key, "diff.patch") == b"new diff"


def test_a_file_that_changed_while_it_was_sent_is_stored_as_sent(
    store: SqlAlchemyStore, key: RunKey, started: RunWriter
) -> None:
    # The sender announced 6 bytes, then read 9: the bytes and their sha256 are what counts.
    sha = hashlib.sha256(b"123456789").hexdigest()
    store.ingest(
        key,
        started.frames(
            file_chunk_record(name="grew.txt", version=1, offset=0, data=b"12345", size=6),
            file_chunk_record(
                name="grew.txt", version=1, offset=5, data=b"6789", size=6, last=True, sha256=sha
            ),
        ),
    )
    (info,) = store.list_files(key)
    assert (info.size, info.sha256) == (9, sha)
    assert read_file(store, key, "grew.txt") == b"123456789"


def test_chunks_of_two_files_may_interleave(store: SqlAlchemyStore, key: RunKey, started: RunWriter) -> None:
    a = file_records("a.txt", 1, b"aaaaaaaaaa", chunk=4)
    b = file_records("b.txt", 1, b"bbbbbbb", chunk=4)
    store.ingest(key, started.frames(a[0], b[0], a[1], b[1], a[2]))
    assert [(f.name, f.complete) for f in store.list_files(key)] == [("a.txt", True), ("b.txt", True)]
    assert (read_file(store, key, "a.txt"), read_file(store, key, "b.txt")) == (b"a" * 10, b"b" * 7)


def test_file_names_that_are_not_relative_paths_cannot_be_read(store: SqlAlchemyStore, key: RunKey) -> None:
    for name in ("", "../x", "/abs"):
        with pytest.raises(InvalidInputError):
            store.read_file(key, name)
    with pytest.raises(RunNotFoundError):
        store.read_file(RunKey("e", "p", "nope"), "x.txt")
    with pytest.raises(RunNotFoundError):
        store.list_files(RunKey("e", "p", "nope"))


def test_logs_come_back_in_order_from_an_offset_up_to_a_limit(
    store: SqlAlchemyStore, key: RunKey, started: RunWriter
) -> None:
    for b in range(5):
        lines = [
            (T0 + 100 * b + i, STDERR if i % 10 == 0 else STDOUT, f"line {100 * b + i}") for i in range(100)
        ]
        store.ingest(key, started.frames(output_record(lines)))
    everything = [line for page in store.logs(key) for line in page]
    assert [line.text for line in everything] == [f"line {i}" for i in range(500)]
    assert everything[10].stream is OutputStream.STDERR
    assert everything[11].stream is OutputStream.STDOUT
    window = [line.text for page in store.logs(key, offset=250, limit=3) for line in page]
    assert window == ["line 250", "line 251", "line 252"]
    tail = [line.text for page in store.logs(key, offset=498) for line in page]
    assert tail == ["line 498", "line 499"]
    assert list(store.logs(key, offset=500)) == []
    with pytest.raises(InvalidInputError):
        store.logs(key, offset=-1)


def test_long_logs_come_in_pages_under_the_message_size(
    store: SqlAlchemyStore, key: RunKey, started: RunWriter
) -> None:
    line = "é" * 50_000  # 100 kB in UTF-8
    store.ingest(key, started.frames(output_record([(T0, STDOUT, f"{i} {line}") for i in range(70)])))
    store.ingest(key, started.frames(output_record([(T0, STDOUT, f"short {i}") for i in range(12_000)])))
    pages = list(store.logs(key))
    assert len(pages) >= 4
    for page in pages:
        assert sum(len(x.text.encode()) for x in page) <= 3 * 1024 * 1024
        assert len(page) <= 10_000
    texts = [x.text for page in pages for x in page]
    assert [t.split()[0] for t in texts[:70]] == [str(i) for i in range(70)]
    assert texts[70:] == [f"short {i}" for i in range(12_000)]


def test_logs_of_an_unknown_run_are_not_found(store: SqlAlchemyStore) -> None:
    with pytest.raises(RunNotFoundError, match="e/p/nope not found"):
        store.logs(RunKey("e", "p", "nope"))


def test_a_run_holds_at_most_ten_thousand_file_names(
    store: SqlAlchemyStore, key: RunKey, started: RunWriter
) -> None:
    sha = hashlib.sha256(b"").hexdigest()
    many = [file_chunk_record(name=f"f/{i}", version=1, last=True, sha256=sha) for i in range(10_000)]
    store.ingest(key, started.frames(*many))
    store.ingest(key, started.frames(*file_records("f/0", 2, b"a new version of a known name is fine")))
    result = store.ingest(key, [(started.seq + 1, file_chunk_record(name="one-more", version=1))])
    assert "would be file 10001 of the run; the limit is 10000" in refusal(result, started.seq + 1)
    assert len(store.list_files(key)) == 10_000
