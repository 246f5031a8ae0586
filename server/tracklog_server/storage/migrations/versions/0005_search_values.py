"""Search: ``run_values``, each run's config, summary, tags and user as typed rows, so that filters
and sorts run inside the database (see ``storage/_values.py``).

Every run that is not deleted is backfilled from its JSON documents, a few hundred runs at a time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tracklog_server.storage import _values

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 500


class _Run:
    """A run's documents as ``_values.sync`` reads them. (Not a dataclass: Alembic loads this file
    outside ``sys.modules``, where dataclasses cannot resolve their annotations.)"""

    def __init__(
        self, pk: int, config: str, summary: str, removed: list[str], tags: list[str], metadata: str
    ) -> None:
        self.pk = pk
        self.config_json = config
        self.summary_json = summary
        self.summary_removed = removed
        self.tags = tags
        self.metadata_json = metadata


def upgrade() -> None:
    op.create_table(
        "run_values",
        sa.Column("run_pk", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("vtype", sa.String(length=8), nullable=False),
        sa.Column("num", sa.Double(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_pk"], ["runs.pk"], name=op.f("fk_run_values_run_pk_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_pk", "kind", "key", name=op.f("pk_run_values")),
    )
    op.create_index("ix_run_values_kind_key_num", "run_values", ["kind", "key", "num"])
    conn = op.get_bind()
    last = -1
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT pk, config_json, summary_json, summary_removed, tags, metadata_json FROM runs "
                "WHERE pk > :last AND deleted_at IS NULL ORDER BY pk LIMIT :n"
            ),
            {"last": last, "n": _BATCH},
        ).all()
        if not rows:
            break
        for pk, config, summary, removed, tags, metadata in rows:
            run = _Run(pk, config, summary, _json_list(removed), _json_list(tags), metadata)
            _values.backfill(conn, run)
        last = rows[-1][0]
    if conn.dialect.name == "postgresql":  # statistics for the planner now, not at autovacuum's leisure
        conn.execute(sa.text("ANALYZE run_values"))


def _json_list(value: object) -> list[str]:
    """A JSON column as read with plain SQL: text on SQLite, already a list on PostgreSQL."""
    loaded = json.loads(value) if isinstance(value, str) else value
    return [str(v) for v in loaded] if isinstance(loaded, list) else []


def downgrade() -> None:
    op.drop_index("ix_run_values_kind_key_num", table_name="run_values")
    op.drop_table("run_values")
