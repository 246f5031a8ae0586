"""Run management: deleted runs keep their row (the id stays reserved), stop requests, and the tags the
training process last sent (so that its tag changes and the API's merge instead of overwriting).

Existing runs are not deleted, have no stop request, and start with ``client_tags`` equal to their
tags (what their training process last sent, as far as the store can tell).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, never batch mode (see 0002: batch mode would rebuild ``runs`` on SQLite).
    op.add_column("runs", sa.Column("deleted_at", sa.Double(), nullable=True))
    op.add_column("runs", sa.Column("stop_requested_at", sa.Double(), nullable=True))
    op.add_column("runs", sa.Column("client_tags", sa.JSON(), server_default=sa.text("'[]'"), nullable=False))
    op.execute(sa.text("UPDATE runs SET client_tags = tags"))


def downgrade() -> None:
    for column in ("client_tags", "stop_requested_at", "deleted_at"):
        op.drop_column("runs", column)
