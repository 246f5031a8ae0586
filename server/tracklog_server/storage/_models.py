"""SQLAlchemy models: the database schema (mirrored by the Alembic migrations in ``migrations/``).

Invariants the store relies on:

* ``runs`` has one row per ``(entity, project, run_id)``; ``last_seq`` is the highest frame applied,
  and frames are applied in seq order without gaps, under a lock on this row.
* ``history_chunks`` holds each column of each ingested HistoryBatch as it came (packed int64 steps,
  packed float64 values, or for JSON columns a serialized ``tracklog.v1.StringList``). Steps of one
  key never overlap across chunks, so ``(run_pk, key, min_step)`` is unique; reading one key uses that
  index and never touches other keys' rows. Row times are the chunks of key ``_timestamp``, written
  with every batch, so the set of rows is known without reading any logged key.
* ``metric_summaries`` has one row per logged key (numeric or JSON) with the values the summary needs.
  NaN is stored as NULL in ``num_last`` (SQLite turns NaN into NULL anyway); ``num_min``/``num_max``
  are NULL while the key has no non-NaN value.
* ``system_chunks`` holds each series of each ingested SystemBatch as it came (packed float64 values),
  keyed by ``(run_pk, seq, key)``, where seq is the client's frame (spools written before the daemon
  had its own sequence) or minus the daemon's own frame (``_daemon_ingest``), so the two never
  collide; the batch's row times are the chunk of key ``_timestamp``. Reading one
  key uses ``(run_pk, key, min_time)`` and never touches other keys' rows; the latest batch is found
  through the same index on ``_timestamp``. ``runs.system_keys`` lists the run's keys (sorted).
* ``output_lines`` has one row per console line, numbered 0, 1, 2 ... per run without gaps;
  ``runs.output_line_count`` is the next number. Lines never change once written.
* ``file_versions`` has one row per version of a file; versions of a name are numbered 1, 2, 3 ... by
  the store in the order their first chunk arrived (the sender's ``version`` only ties the chunks of
  one upload together, in ``upload_version``). ``received`` is the next byte offset expected;
  ``file_chunks`` holds the data at ``byte_offset``, contiguous from 0. A complete version never
  changes again; ``runs.file_count`` counts distinct names.
* ``runs.runtime``/``tracked_seconds`` are NULL until a Timing record arrives.
* ``runs.last_seq`` counts the training process's frames and ``runs.daemon_seq`` the daemon's own:
  each source's frames are applied at most once, in order, under the run row's lock.
* ``run_values`` derives typed rows from each run's config, summary, tags and user (``_values``), in
  the same transaction as they change, so that searches filter and sort inside the database.
* JSON documents that may hold NaN/Infinity (config, summary, metadata) are TEXT, because the
  databases' JSON types reject those values; tags are plain string lists and use the JSON type.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an "INTEGER PRIMARY KEY"; PostgreSQL gets a 64-bit identity.
BigIntPk = BigInteger().with_variant(Integer(), "sqlite")

# Explicit constraint names keep migrations reproducible on both backends.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The key under which each batch's row timestamps are stored. Logged keys may not use it.
TIMESTAMP_KEY = "_timestamp"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("entity", "project", "run_id"),
        Index("ix_runs_state_heartbeat_at", "state", "heartbeat_at"),
        Index("ix_runs_entity_project_created_at", "entity", "project", "created_at"),
        Index("ix_runs_entity_project_name", "entity", "project", "name"),  # unique generated names
    )

    pk: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    group: Mapped[str] = mapped_column("run_group", Text, default="")
    job_type: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int] = mapped_column(Integer, default=0)
    finish_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Double)
    heartbeat_at: Mapped[float] = mapped_column(Double)
    # NULL until a Finish record is applied; a run with a Finish is never revived by heartbeats.
    finished_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    config_json: Mapped[str] = mapped_column(Text, default="{}")
    summary_json: Mapped[str] = mapped_column(Text, default="{}")  # explicitly set values only
    # Keys removed from the summary; their logged value stays hidden until the key is logged again.
    summary_removed: Mapped[list[str]] = mapped_column(JSON, default=list)
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    host: Mapped[str] = mapped_column(Text, default="")
    run_dir: Mapped[str] = mapped_column(Text, default="")
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    history_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    last_step: Mapped[int] = mapped_column(BigInteger, default=-1)
    runtime: Mapped[float | None] = mapped_column(Double, nullable=True)
    tracked_seconds: Mapped[float | None] = mapped_column(Double, nullable=True)
    output_line_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    file_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    system_keys: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # What was lost or refused for this run (damaged spool frames, records over the client's memory
    # cap, records the store refused), oldest first, capped at MAX_PROBLEMS; rows_lost counts rows.
    problems: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    rows_lost: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The daemon's own sequence (system metrics, metadata, captured files): the last frame applied.
    daemon_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # sha256 hex of the run's writer token (RunStart.writer_token); empty for runs from before it.
    writer_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # Set when the run was deleted: the row stays so that its id stays reserved, reads say it was
    # deleted and ingest for it is refused. Its data (history, metrics, output, files) is gone.
    deleted_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    # Set when a stop was requested through the API; heartbeats answer it until the run finishes.
    stop_requested_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    # The tag list the training process last sent. Its next list is applied as a difference from
    # this one, so that tags added or removed through the API meanwhile are kept (later write wins
    # per tag).
    client_tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # When each mutable field (per item: tag, config key, summary key) was last written, by whichever
    # writer won: the later write wins (see storage/_field_times.py).
    field_times: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")


class HistoryChunkRow(Base):
    __tablename__ = "history_chunks"
    __table_args__ = (Index("ix_history_chunks_run_key_min_step", "run_pk", "key", "min_step", unique=True),)

    id: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    run_pk: Mapped[int] = mapped_column(BigInteger, ForeignKey("runs.pk", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(Text)
    seq: Mapped[int] = mapped_column(BigInteger)  # the frame that carried it
    col_type: Mapped[int] = mapped_column(SmallInteger)  # tracklog.v1.ColumnType
    min_step: Mapped[int] = mapped_column(BigInteger)
    max_step: Mapped[int] = mapped_column(BigInteger)
    n: Mapped[int] = mapped_column(Integer)
    steps: Mapped[bytes] = mapped_column(LargeBinary)
    values: Mapped[bytes] = mapped_column(LargeBinary)


class MetricSummaryRow(Base):
    __tablename__ = "metric_summaries"

    run_pk: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("runs.pk", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    last_step: Mapped[int] = mapped_column(BigInteger)  # step of the last value of any type
    last_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # set when that value is JSON
    has_num: Mapped[bool] = mapped_column(Boolean, default=False)
    num_is_int: Mapped[bool] = mapped_column(Boolean, default=False)
    num_last: Mapped[float | None] = mapped_column(Double, nullable=True)  # NULL: NaN
    num_last_step: Mapped[int] = mapped_column(BigInteger, default=-1)
    num_min: Mapped[float | None] = mapped_column(Double, nullable=True)  # NULL: no non-NaN value
    num_max: Mapped[float | None] = mapped_column(Double, nullable=True)


class SystemChunkRow(Base):
    __tablename__ = "system_chunks"
    __table_args__ = (Index("ix_system_chunks_run_key_min_time", "run_pk", "key", "min_time"),)

    run_pk: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("runs.pk", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # the frame that carried it
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    min_time: Mapped[float] = mapped_column(Double)
    max_time: Mapped[float] = mapped_column(Double)
    n: Mapped[int] = mapped_column(Integer)
    values: Mapped[bytes] = mapped_column(LargeBinary)  # float64 LE; row times for key _timestamp


class OutputLineRow(Base):
    __tablename__ = "output_lines"

    run_pk: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("runs.pk", ondelete="CASCADE"), primary_key=True
    )
    line_no: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    time: Mapped[float] = mapped_column(Double)
    stream: Mapped[int] = mapped_column(SmallInteger)  # tracklog.v1.OutputStream
    text: Mapped[str] = mapped_column(Text)


class FileVersionRow(Base):
    __tablename__ = "file_versions"

    run_pk: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("runs.pk", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    upload_version: Mapped[int] = mapped_column(BigInteger)  # the sender's version number
    size: Mapped[int] = mapped_column(BigInteger)  # announced; the stored size once complete
    received: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))  # empty until complete
    complete: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[float] = mapped_column(Double)


class FileChunkRow(Base):
    __tablename__ = "file_chunks"
    __table_args__ = (
        ForeignKeyConstraint(
            ["run_pk", "name", "version"],
            ["file_versions.run_pk", "file_versions.name", "file_versions.version"],
            ondelete="CASCADE",
        ),
    )

    run_pk: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    byte_offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class RunValueRow(Base):
    """A run's config, summary, tags and user as typed rows, for filters and sorts (see ``_values``).
    Derived from the run's JSON documents and written in the same transaction as they are."""

    __tablename__ = "run_values"
    # WITHOUT ROWID on SQLite: the rows live in the primary key's B-tree, so the per-run lookups a
    # filter makes read the value in the same descent (about 20% faster than through a rowid).
    __table_args__ = (Index("ix_run_values_kind_key_num", "kind", "key", "num"), {"sqlite_with_rowid": False})

    run_pk: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("runs.pk", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # _values.KIND_*
    key: Mapped[str] = mapped_column(Text, primary_key=True)  # dotted; a tag; "user"
    vtype: Mapped[str] = mapped_column(String(8))  # _filter_ast.ValueType
    num: Mapped[float | None] = mapped_column(Double, nullable=True)  # numbers, bools as 1/0; NULL: NaN
    text: Mapped[str | None] = mapped_column(Text, nullable=True)  # strings
