"""Storage: the store's contract (``AbstractStore``) and its SQLAlchemy implementation on SQLite or
PostgreSQL, with the schema and its Alembic migrations. Rows become plain entities before they leave."""
