"""Automatic capture: system metric chunks, console lines, file versions and chunks, run timing.

Existing runs keep every value; the new run columns start empty (no timing yet, no lines, no files,
no system keys).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN, never batch mode: on SQLite batch mode rebuilds the table
    # (copy, drop, rename), and dropping ``runs`` with foreign keys on would cascade to every table
    # that references it, deleting all history. SQLite adds a NOT NULL column with a constant default
    # in place.
    op.add_column("runs", sa.Column("runtime", sa.Double(), nullable=True))
    op.add_column("runs", sa.Column("tracked_seconds", sa.Double(), nullable=True))
    op.add_column(
        "runs", sa.Column("output_line_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("runs", sa.Column("file_count", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.add_column("runs", sa.Column("system_keys", sa.JSON(), server_default=sa.text("'[]'"), nullable=False))

    op.create_table(
        "system_chunks",
        sa.Column("run_pk", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("min_time", sa.Double(), nullable=False),
        sa.Column("max_time", sa.Double(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("values", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_pk"], ["runs.pk"], name=op.f("fk_system_chunks_run_pk_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_pk", "seq", "key", name=op.f("pk_system_chunks")),
    )
    op.create_index("ix_system_chunks_run_key_min_time", "system_chunks", ["run_pk", "key", "min_time"])

    op.create_table(
        "output_lines",
        sa.Column("run_pk", sa.BigInteger(), nullable=False),
        sa.Column("line_no", sa.BigInteger(), nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("stream", sa.SmallInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_pk"], ["runs.pk"], name=op.f("fk_output_lines_run_pk_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_pk", "line_no", name=op.f("pk_output_lines")),
    )

    op.create_table(
        "file_versions",
        sa.Column("run_pk", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("upload_version", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_pk"], ["runs.pk"], name=op.f("fk_file_versions_run_pk_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_pk", "name", "version", name=op.f("pk_file_versions")),
    )

    op.create_table(
        "file_chunks",
        sa.Column("run_pk", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("byte_offset", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_pk", "name", "version"],
            ["file_versions.run_pk", "file_versions.name", "file_versions.version"],
            name=op.f("fk_file_chunks_run_pk_file_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_pk", "name", "version", "byte_offset", name=op.f("pk_file_chunks")),
    )


def downgrade() -> None:
    op.drop_table("file_chunks")
    op.drop_table("file_versions")
    op.drop_table("output_lines")
    op.drop_index("ix_system_chunks_run_key_min_time", table_name="system_chunks")
    op.drop_table("system_chunks")
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not batch mode: see upgrade().
    for column in ("system_keys", "file_count", "output_line_count", "tracked_seconds", "runtime"):
        op.drop_column("runs", column)
