"""Alembic environment: migrations run on the engine mailet-mta hands over."""

from alembic import context

from mailet_mta.storage.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    context.run_migrations()
