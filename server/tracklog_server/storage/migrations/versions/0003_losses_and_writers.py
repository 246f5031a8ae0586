"""Losses and writers: what a run lost and why, the daemon's own sequence, the writer token's hash.

Existing runs keep every value; they start with no problems, nothing lost, no daemon frames and no
writer hash (any writer is accepted for them, as before).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, never batch mode (see 0002: batch mode would rebuild ``runs`` on SQLite).
    zero = sa.text("0")
    op.add_column("runs", sa.Column("problems", sa.JSON(), server_default=sa.text("'[]'"), nullable=False))
    op.add_column("runs", sa.Column("rows_lost", sa.BigInteger(), server_default=zero, nullable=False))
    op.add_column("runs", sa.Column("daemon_seq", sa.BigInteger(), server_default=zero, nullable=False))
    empty = sa.text("''")
    op.add_column("runs", sa.Column("writer_hash", sa.String(64), server_default=empty, nullable=False))


def downgrade() -> None:
    for column in ("writer_hash", "daemon_seq", "rows_lost", "problems"):
        op.drop_column("runs", column)
