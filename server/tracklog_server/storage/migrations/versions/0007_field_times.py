"""Field times: when each mutable field of a run (per tag, config key and summary key) was last
written, so that edits from the training process and the API meet by time, not by arrival order.

Existing runs start with no times: their next write of any field wins, as it did before.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, never batch mode (see 0002: batch mode would rebuild ``runs`` on SQLite).
    op.add_column("runs", sa.Column("field_times", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))


def downgrade() -> None:
    op.drop_column("runs", "field_times")
