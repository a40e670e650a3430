"""The Alembic environment for every plugin: mesh passes the connection, the plugin's schema and
its models in `config.attributes`, so plugins ship revisions only, never an env.py."""

from __future__ import annotations

from typing import Any

from alembic import context

config = context.config
connection = config.attributes["connection"]
schema: str = config.attributes["schema"]
metadata = config.attributes.get("metadata")


def only_this_schema(name: str | None, type_: Any, parent_names: Any) -> bool:
    """Autogenerate looks at this plugin's schema only: never at another plugin's tables."""
    if type_ == "schema":
        return name == schema
    return parent_names.get("schema_name", schema) == schema


context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="alembic_version",
    version_table_schema=schema,
    include_schemas=True,
    include_name=only_this_schema,
    transactional_ddl=True,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)

with context.begin_transaction():
    context.run_migrations()
