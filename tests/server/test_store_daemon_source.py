"""The daemon's own sequence of a run (IngestRequest.source = SOURCE_DAEMON) on SQLite and PostgreSQL:
applied at most once per (run, source, seq), in order, only for a run the store knows, only the
kinds the daemon makes, beside the client's sequence without colliding with it."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracklog_server import InvalidInputError, PermissionDeniedError, RunKey, SqlAlchemyStore

from .helpers import (
    RunWriter,
    StatementCounter,
    file_records,
    finish_record,
    history_record,
    metadata_record,
    read_file,
    read_system,
    start_record,
    system_record,
)
from .test_store_losses import lost_record

T0 = 1_700_000_000.0


def sample(i: int) -> bytes:
    """The daemon's i-th system window: one row at T0 + i."""
    return system_record([T0 + i], {"system/cpu": [float(i)]})


def daemon_frames(first: int, count: int) -> list[tuple[int, bytes]]:
    return [(seq, sample(seq)) for seq in range(first, first + count)]


def started(store: SqlAlchemyStore, key: RunKey) -> RunWriter:
    w = RunWriter(key)
    assert store.ingest(key, w.frames(start_record(key), history_record([(0, {"loss": 1.0})]))).accepted
    return w


def test_a_daemon_batch_resent_after_a_timeout_is_not_applied_twice(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    started(store, key)
    first = store.ingest_daemon(key, daemon_frames(1, 3))
    resent = store.ingest_daemon(key, daemon_frames(1, 3))  # its answer was lost: the daemon resends
    extended = store.ingest_daemon(key, daemon_frames(2, 4))  # overlaps and goes on

    assert (first.accepted, first.applied_through) == (True, 3)
    assert (resent.accepted, resent.applied_through) == (True, 3)
    assert (extended.accepted, extended.applied_through) == (True, 5)
    assert [r["_timestamp"] for r in read_system(store, key)] == [T0 + i for i in range(1, 6)]
    run = store.get_run(key)
    assert (run.daemon_seq, run.last_seq) == (5, 2)  # two sequences, neither moved the other


def test_daemon_frames_for_a_run_the_store_does_not_know_yet_are_applied_once_its_run_start_arrives(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    early = store.ingest_daemon(key, daemon_frames(1, 2))
    assert (early.accepted, early.applied_through) == (False, 0)  # "not accepted": try again later

    started(store, key)
    later = store.ingest_daemon(key, daemon_frames(1, 2))

    assert (later.accepted, later.applied_through) == (True, 2)
    assert [r["system/cpu"] for r in read_system(store, key)] == [1.0, 2.0]


def test_a_gap_in_the_daemons_sequence_is_not_accepted_and_nothing_is_applied(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    started(store, key)
    store.ingest_daemon(key, daemon_frames(1, 2))
    gap = store.ingest_daemon(key, daemon_frames(4, 2))
    assert (gap.accepted, gap.applied_through) == (False, 2)
    assert len(read_system(store, key)) == 2


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        (history_record([(5, {"loss": 0.0})]), "history"),
        (finish_record(), "finish"),
        (b"", "an empty record"),
    ],
)
def test_the_daemons_sequence_holds_only_system_metadata_and_file_records(
    store: SqlAlchemyStore, key: RunKey, record: bytes, kind: str
) -> None:
    started(store, key)
    refusal = f"frame 2: .*only system, metadata, file and lost records, not {kind}"
    with pytest.raises(InvalidInputError, match=refusal):
        store.ingest_daemon(key, [(1, sample(1)), (2, record)])
    run = store.get_run(key)
    assert (run.daemon_seq, run.state.value, run.history_rows) == (0, "running", 1)
    assert read_system(store, key) == []  # all or nothing


def test_daemon_system_chunks_do_not_collide_with_the_client_seqs_of_old_spools(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    # Spools written before the daemon had its own sequence carry system metrics at client seqs.
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key), system_record([T0], {"system/cpu": [50.0]})))
    assert store.ingest_daemon(key, daemon_frames(1, 2)).accepted
    store.ingest(key, w.frames(system_record([T0 + 9], {"system/cpu": [9.0]})))

    rows = read_system(store, key)
    assert [(r["_timestamp"], r["system/cpu"]) for r in rows] == [
        (T0, 50.0),
        (T0 + 1, 1.0),
        (T0 + 2, 2.0),
        (T0 + 9, 9.0),
    ]
    assert read_system(store, key, keys=("system/cpu",), samples=2)[-1]["system/cpu"] == 9.0
    latest = store.latest_system_metrics(key)
    assert latest is not None
    assert (latest.time, dict(latest.values)["system/cpu"]) == (T0 + 9, 9.0)


def test_the_daemons_metadata_and_files_arrive_after_the_run_has_finished(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    # A run shorter than the daemon's capture still gets its metadata and files.
    w = started(store, key)
    store.ingest(key, w.frames(finish_record()))
    payloads = [*file_records("requirements.txt", 1, b"numpy==2.0\n"), metadata_record({"host": "box"})]
    assert store.ingest_daemon(key, list(enumerate(payloads, 1))).accepted

    run = store.get_run(key)
    assert run.state.value == "finished"
    metadata = json.loads(run.metadata_json)
    assert metadata["host"] == "box"
    assert metadata["offline"] is False  # the client's RunStart keys are kept beside
    assert read_file(store, key, "requirements.txt") == b"numpy==2.0\n"


def test_a_daemon_ingest_issues_the_same_few_statements_whatever_its_size(
    store: SqlAlchemyStore, key: RunKey, counter: StatementCounter
) -> None:
    started(store, key)
    counter.statements.clear()
    store.ingest_daemon(key, daemon_frames(1, 2))
    small = len(counter.statements)
    counter.statements.clear()
    payloads = [sample(i) for i in range(3, 200)] + [metadata_record({"a": 1})]
    store.ingest_daemon(key, list(enumerate(payloads, 3)))
    assert small <= len(counter.statements) <= 4, counter.statements  # lock, system insert, update


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        # (first daemon seq, how many, whether a client batch goes first)
        st.tuples(st.integers(1, 12), st.integers(1, 6), st.booleans()),
        min_size=1,
        max_size=8,
    )
)
def test_any_order_of_resends_gaps_and_client_batches_applies_each_daemon_seq_once_in_order(
    tmp_path_factory: pytest.TempPathFactory, batches: list[tuple[int, int, bool]]
) -> None:
    # On SQLite only: one backend is enough for the property; the examples above run on both.
    key = RunKey("alice", "mnist", "prop1")
    store = SqlAlchemyStore(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'store.db'}")
    try:
        w = RunWriter(key)
        store.ingest(key, w.frames(start_record(key)))
        applied = 0
        for first, count, client_first in batches:
            if client_first:
                store.ingest(key, w.frames(history_record([(w.seq, {"x": 1.0})])))
            result = store.ingest_daemon(key, daemon_frames(first, count))
            if first <= applied + 1:  # continues (or resends part of) what the store holds
                applied = max(applied, first + count - 1)
                assert (result.accepted, result.applied_through) == (True, applied)
            else:  # a gap: nothing applied
                assert (result.accepted, result.applied_through) == (False, applied)
        assert [r["system/cpu"] for r in read_system(store, key)] == [float(i) for i in range(1, applied + 1)]
        assert store.get_run(key).daemon_seq == applied
        assert store.get_run(key).last_seq == w.seq
    finally:
        store.close()


def test_the_daemons_frames_of_a_run_with_a_writer_token_need_that_token(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    token = "t" * 48
    store.ingest(key, RunWriter(key).frames(start_record(key, writer_token=token)), writer_token=token)

    for wrong in ("", "u" * 48):
        with pytest.raises(PermissionDeniedError, match="accepts frames only from its writer"):
            store.ingest_daemon(key, daemon_frames(1, 2), writer_token=wrong)
    result = store.ingest_daemon(key, daemon_frames(1, 2), writer_token=token)
    assert (result.accepted, result.applied_through) == (True, 2)


def test_frames_of_the_daemons_spool_lost_to_damage_are_noted_and_the_next_frame_follows_them(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    started(store, key)
    frames = [(1, sample(1)), (2, lost_record(2, 4, 0)), (5, sample(5))]
    assert store.ingest_daemon(key, frames).applied_through == 5
    run = store.get_run(key)
    assert run.daemon_seq == 5
    assert len(run.problems) == 1
    assert "frames 2-4" in run.problems[0]
    assert len(read_system(store, key)) == 2
