"""Run identity: an index on (entity, project, name), so that a run created with a generated name
finds at once whether another run of its project has it (the store keeps generated names unique).

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_runs_entity_project_name", "runs", ["entity", "project", "name"])


def downgrade() -> None:
    op.drop_index("ix_runs_entity_project_name", table_name="runs")
