"""A run's frames come only from its writer: the store keeps the hash of the writer token the run was
created with and refuses every other token, on SQLite and PostgreSQL, through the store and gRPC."""

from __future__ import annotations

import hashlib

import grpc
import pytest

from tracklog.v1 import records_pb2, store_pb2, store_pb2_grpc
from tracklog_server import PermissionDeniedError, RunKey, SqlAlchemyStore, StoreServer

from .helpers import RunWriter, StatementCounter, history_record, read_rows, ref, start_record

TOKEN = "a" * 48
OTHER = "b" * 48


def rows(start: int, stop: int) -> list[tuple[int, dict[str, float]]]:
    return [(s, {"loss": 1.0 / (s + 1)}) for s in range(start, stop)]


def test_the_store_keeps_the_sha256_of_the_creating_writers_token(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    store.ingest(key, RunWriter(key).frames(start_record(key, writer_token=TOKEN)), writer_token=TOKEN)

    with store.engine.connect() as conn:
        (stored,) = conn.exec_driver_sql("SELECT writer_hash FROM runs").one()
    assert stored == hashlib.sha256(TOKEN.encode()).hexdigest()


def test_frames_with_another_writer_token_are_refused_whole_and_the_writers_later_frames_all_apply(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key), history_record(rows(0, 5))), writer_token=TOKEN)

    # A stranger's frame at the next seq with a far-away step would make the store drop every later
    # row of the real writer (steps at or below the last are dropped) and take its seq.
    forged = [(w.seq + 1, history_record([(10**9, {"loss": 0.0})]))]
    for token in (OTHER, ""):
        with pytest.raises(PermissionDeniedError, match="accepts frames only from its writer"):
            store.ingest(key, forged, writer_token=token)

    result = store.ingest(key, w.frames(history_record(rows(5, 10))), writer_token=TOKEN)
    assert (result.accepted, result.applied_through) == (True, 3)
    assert [r["_step"] for r in read_rows(store, key)] == list(range(10))
    assert store.get_run(key).last_step == 9


def test_a_resend_of_applied_frames_with_another_token_is_refused_too(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    frames = RunWriter(key).frames(start_record(key), history_record(rows(0, 3)))
    store.ingest(key, frames, writer_token=TOKEN)

    with pytest.raises(PermissionDeniedError):
        store.ingest(key, frames, writer_token=OTHER)
    assert store.ingest(key, frames, writer_token=TOKEN).applied_through == 2


def test_a_run_created_without_a_writer_token_accepts_any_writer(store: SqlAlchemyStore, key: RunKey) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key)))

    assert store.ingest(key, w.frames(history_record(rows(0, 2))), writer_token=OTHER).accepted
    assert store.ingest(key, w.frames(history_record(rows(2, 4)))).accepted
    assert store.get_run(key).history_rows == 4


def test_an_oversized_writer_token_is_refused_with_a_reason(store: SqlAlchemyStore, key: RunKey) -> None:
    with pytest.raises(ValueError, match="writer token of 257 characters; the limit is 256"):
        store.ingest(key, RunWriter(key).frames(start_record(key)), writer_token="x" * 257)


WRITER = "0123456789abcdef" * 3
NEAR_MISSES = [
    "",
    WRITER[:-1],
    WRITER + "0",
    WRITER[:-1] + "e",
    WRITER.upper(),
    " " + WRITER,
    hashlib.sha256(WRITER.encode()).hexdigest(),  # what the store keeps is no token
    "\u00e9" * 48,
]


@pytest.mark.parametrize("token", NEAR_MISSES, ids=range(len(NEAR_MISSES)))
def test_no_token_but_the_writers_own_is_accepted(store: SqlAlchemyStore, key: RunKey, token: str) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key)), writer_token=WRITER)
    next_frame = w.frames(history_record(rows(0, 1)))

    with pytest.raises(PermissionDeniedError):
        store.ingest(key, next_frame, writer_token=token)
    assert store.get_run(key).last_seq == 1
    assert store.ingest(key, next_frame, writer_token=WRITER).applied_through == 2


def test_checking_the_writer_adds_no_statement_to_an_ingest(
    store: SqlAlchemyStore, key: RunKey, counter: StatementCounter
) -> None:
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key), history_record(rows(0, 1))), writer_token=TOKEN)
    other = RunKey(key.entity, key.project, key.id + "n")
    wn = RunWriter(other)
    store.ingest(other, wn.frames(start_record(other), history_record(rows(0, 1))))

    counter.statements.clear()
    store.ingest(key, w.frames(history_record(rows(1, 2))), writer_token=TOKEN)
    with_token = len(counter.statements)
    counter.statements.clear()
    store.ingest(other, wn.frames(history_record(rows(1, 2))))
    assert with_token == len(counter.statements)
    counter.statements.clear()
    with pytest.raises(PermissionDeniedError):
        store.ingest(key, w.frames(history_record(rows(2, 3))), writer_token=OTHER)
    assert len(counter.statements) == 1  # the run row's SELECT ... FOR UPDATE, then nothing


def test_a_forged_ingest_over_grpc_gets_permission_denied_with_the_reason(db_url: str) -> None:
    key = RunKey("alice", "mnist", "live1")
    with (
        StoreServer(db_url, port=0, http_port=None) as server,
        grpc.insecure_channel(server.grpc_address) as ch,
    ):
        stub = store_pb2_grpc.StoreStub(ch)
        w = RunWriter(key)

        def request(token: str, *records: bytes) -> store_pb2.IngestRequest:
            frames = [records_pb2.Frame(seq=s, record=r) for s, r in w.frames(*records)]
            return store_pb2.IngestRequest(ref=ref(key), frames=frames, writer_token=token)

        stub.Ingest(request(TOKEN, start_record(key, writer_token=TOKEN)), timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Ingest(request(OTHER, history_record(rows(0, 1))), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "run alice/mnist/live1 accepts frames only from its writer" in (refused.value.details() or "")
