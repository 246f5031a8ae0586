"""Initial schema: runs, history chunks, metric summaries.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("pk", _BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("run_group", sa.Text(), nullable=False),
        sa.Column("job_type", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=False),
        sa.Column("finish_reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("heartbeat_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("summary_json", sa.Text(), nullable=False),
        sa.Column("summary_removed", sa.JSON(), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("run_dir", sa.Text(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("history_rows", sa.BigInteger(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_runs")),
        sa.UniqueConstraint("entity", "project", "run_id", name=op.f("uq_runs_entity_project_run_id")),
    )
    op.create_index("ix_runs_entity_project_created_at", "runs", ["entity", "project", "created_at"])
    op.create_index("ix_runs_state_heartbeat_at", "runs", ["state", "heartbeat_at"])

    op.create_table(
        "history_chunks",
        sa.Column("id", _BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("run_pk", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("col_type", sa.SmallInteger(), nullable=False),
        sa.Column("min_step", sa.BigInteger(), nullable=False),
        sa.Column("max_step", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("steps", sa.LargeBinary(), nullable=False),
        sa.Column("values", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_pk"], ["runs.pk"], name=op.f("fk_history_chunks_run_pk_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history_chunks")),
    )
    op.create_index(
        "ix_history_chunks_run_key_min_step", "history_chunks", ["run_pk", "key", "min_step"], unique=True
    )

    op.create_table(
        "metric_summaries",
        sa.Column("run_pk", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.Column("last_json", sa.Text(), nullable=True),
        sa.Column("has_num", sa.Boolean(), nullable=False),
        sa.Column("num_is_int", sa.Boolean(), nullable=False),
        sa.Column("num_last", sa.Double(), nullable=True),
        sa.Column("num_last_step", sa.BigInteger(), nullable=False),
        sa.Column("num_min", sa.Double(), nullable=True),
        sa.Column("num_max", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_pk"], ["runs.pk"], name=op.f("fk_metric_summaries_run_pk_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_pk", "key", name=op.f("pk_metric_summaries")),
    )


def downgrade() -> None:
    op.drop_table("metric_summaries")
    op.drop_index("ix_history_chunks_run_key_min_step", table_name="history_chunks")
    op.drop_table("history_chunks")
    op.drop_index("ix_runs_state_heartbeat_at", table_name="runs")
    op.drop_index("ix_runs_entity_project_created_at", table_name="runs")
    op.drop_table("runs")
