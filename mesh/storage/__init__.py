"""Storage: a database schema per plugin, each with its own Alembic history."""
