"""One rule for the SDK and the store: what log() accepts the store keeps exactly, what the store
refuses costs one record, and the database's own refusals are per record too (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracklog
from tracklog import _rules
from tracklog.testing import read_records
from tracklog.v1 import records_pb2
from tracklog_server import DataRefusedError, RunKey, SqlAlchemyStore
from tracklog_server._errors import translate_db_errors

from .conftest import PostgresDatabases
from .helpers import (
    STDOUT,
    RunWriter,
    config_record,
    finish_record,
    history_record,
    output_record,
    read_rows,
    refusal,
    start_record,
    update_record,
)

T0 = 1_700_000_000.0


def _finish_with_reason(reason: str) -> bytes:
    finish = records_pb2.Finish(state=records_pb2.RUN_STATE_FAILED, exit_code=1, reason=reason)
    return records_pb2.Record(finish=finish).SerializeToString()


# Records an older SDK (or any client) could send: PostgreSQL's text cannot hold a NUL, so each was a
# DataError there, retried forever; on SQLite they were stored, though log() now refuses them.
NUL_RECORDS: dict[str, tuple[Callable[[RunKey], bytes], str]] = {
    "name": (lambda k: update_record(name="a\x00b"), "name 'a\\x00b' contains a NUL character"),
    "notes": (lambda k: update_record(notes="\x00"), "notes '\\x00' contains a NUL"),
    "group": (lambda k: update_record(group="g\x00"), "group 'g\\x00' contains a NUL"),
    "job_type": (lambda k: update_record(job_type="j\x00"), "job_type 'j\\x00' contains a NUL"),
    "tag": (lambda k: update_record(tags=["ok", "t\x00"]), "a tag 't\\x00' contains a NUL"),
    "host": (lambda k: start_record(k, resume="allow", host="h\x00"), "host 'h\\x00' contains a NUL"),
    "finish reason": (lambda k: _finish_with_reason("r\x00"), "reason 'r\\x00' contains a NUL"),
    "history key": (lambda k: history_record([(0, {"lo\x00ss": 1.0})]), "history key 'lo\\x00ss' contains"),
    "2,000-character key": (lambda k: history_record([(0, {"k" * 2000: 1.0})]), "is 2000 characters"),
    "_runtime": (lambda k: history_record([(0, {"_runtime": 1.0})]), "history key '_runtime' is reserved"),
    "unreadable step": (
        lambda k: history_record([(2**63 - 1, {"y": 1.0})]),
        "step must be at most 2**63 - 2",
    ),
}


@pytest.mark.parametrize("case", NUL_RECORDS, ids=list(NUL_RECORDS))
def test_a_record_breaking_the_rule_costs_only_itself_on_either_database(
    store: SqlAlchemyStore, key: RunKey, case: str
) -> None:
    make, reason = NUL_RECORDS[case]
    w = RunWriter(key)
    store.ingest(key, w.frames(start_record(key, name="kept", tags=["x"])))
    frames = w.frames(history_record([(1, {"x": 1.0})]), make(key), config_record({"after": 1}))
    assert reason in refusal(store.ingest(key, frames), 3)
    run = store.get_run(key)
    assert (run.name, run.tags, run.last_seq, run.config_json) == ("kept", ("x",), 4, '{"after":1}')
    assert [r["x"] for r in read_rows(store, key)] == [1.0]
    assert len(run.problems) == 1


def test_a_nul_in_a_console_line_is_kept_as_a_replacement_character(
    store: SqlAlchemyStore, key: RunKey
) -> None:
    w = RunWriter(key)
    result = store.ingest(key, w.frames(start_record(key), output_record([(T0, STDOUT, "a\x00b")])))
    assert (result.accepted, result.refused) == (True, ())
    assert [line.text for page in store.logs(key) for line in page] == ["a\ufffdb"]


@pytest.mark.postgres
def test_data_the_database_itself_refuses_costs_one_record_not_the_batch(
    postgres_databases: PostgresDatabases,
) -> None:
    """A limit only the database knows (here a key column narrowed to 12 characters) refuses a value
    with a DataError: the store finds the record, one frame per transaction, and refuses only it."""
    url = postgres_databases.create()
    store = SqlAlchemyStore(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE history_chunks ALTER COLUMN key TYPE varchar(12)")
        key = RunKey("e", "p", secrets.token_hex(4))
        w = RunWriter(key)
        frames = w.frames(
            start_record(key),
            history_record([(0, {"short": 1.0})]),
            history_record([(1, {"a-longer-key-than-12": 2.0})]),
            history_record([(2, {"short": 3.0})]),
            finish_record(),
        )
        reason = refusal(store.ingest(key, frames), 3)
        assert "the database refused the data (value too long" in reason
        run = store.get_run(key)
        assert (run.state.value, run.history_rows, run.rows_lost, run.last_seq) == ("finished", 2, 1, 5)
        assert [r.get("short") for r in read_rows(store, key)] == [1.0, 3.0]
    finally:
        store.close()


@pytest.mark.postgres
def test_a_nul_the_database_refuses_is_a_data_refusal_not_an_outage(
    postgres_databases: PostgresDatabases,
) -> None:
    store = SqlAlchemyStore(postgres_databases.create())
    try:
        with (
            pytest.raises(DataRefusedError, match="NUL"),
            translate_db_errors("test"),
            store.engine.connect() as conn,
        ):
            conn.exec_driver_sql("SELECT %(v)s::text", {"v": "a\x00b"})
    finally:
        store.close()


# -- log() and the store agree ---------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # surrogates and NUL included
KEYS = st.one_of(
    st.text(ANY_CHAR, max_size=8),
    st.sampled_from(["", "_step", "_timestamp", "_runtime", "a/b", "x" * 256, "x" * 257, "\x00", "\ud800"]),
    st.text(ANY_CHAR, min_size=250, max_size=260),
)
SCALARS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**53, 2**53 + 1, -(2**63), 2**64 - 1, 2**64, True, False, None]),
    st.text(ANY_CHAR, max_size=20),
)
VALUES = st.recursive(
    st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.sampled_from([object(), {1, 2}, b"bytes"])),
    lambda inner: st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6,
)
ROWS = st.dictionaries(KEYS, VALUES, max_size=4)
STEPS = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=10),
    st.sampled_from([-1, _rules.MAX_STEP - 1, _rules.MAX_STEP, 2**63, 2**64]),
)


def _names(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every key a message may name: flattened keys, and list items as ``key[i]``."""
    out = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        out.append(name)
        if isinstance(value, Mapping):
            out.extend(_names(value, name + "/"))
        elif isinstance(value, list):
            out.extend(f"{name}[{i}]" for i in range(len(value)))
    return out


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _comparable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


@pytest.mark.slow
@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=ROWS, step=STEPS)
def test_log_either_refuses_naming_the_key_or_the_store_keeps_the_row_exactly(
    store: SqlAlchemyStore, data: dict[str, Any], step: int | None
) -> None:
    run = tracklog.init(project="p", mode="offline")
    try:
        run.log(data, step=step, commit=True if step is not None else None)
        logged = True
    except (TypeError, ValueError) as exc:
        logged = False
        message = str(exc)
        # The message names the key (a long one by its start), or the step.
        names = _names(data)
        assert "step" in message or any(_rules.short(n) in message or repr(n) in message for n in names)
        run.log({"after": 1.0})  # nothing of the refused call was recorded; the run goes on
    run.finish()
    key = RunKey(run.entity, run.project, run.id)
    result = store.ingest(key, [(seq, r.SerializeToString()) for seq, r in read_records(run.dir)])
    assert (result.accepted, result.refused) == (True, ())
    rows = read_rows(store, key)
    if not logged:
        assert [(r["_step"], r["after"]) for r in rows] == [(0, 1.0)]
        return
    (row,) = rows
    assert row["_step"] == (step or 0)
    stored = {k: _comparable(v) for k, v in row.items() if k not in ("_step", "_timestamp")}
    assert stored == {k: _comparable(v) for k, v in _flat(data).items()}
