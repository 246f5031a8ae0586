"""Alembic environment: runs on a connection handed over by ``tracklog_server.storage._database``.

There is no ini file and no URL here: the server opens the connection (with its SQLite settings and,
on PostgreSQL, an advisory lock) inside a transaction, and commits after the upgrade.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from tracklog_server.storage._models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("tracklog migrations run through tracklog_server, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables for future migrations.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
