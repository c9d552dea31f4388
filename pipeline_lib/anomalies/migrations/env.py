"""Alembic environment of the tracker: migrations run on the connection `db.migrate` hands over."""

from alembic import context

from pipeline_lib.anomalies.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")  # SQLite alters by table copy
with context.begin_transaction():
    context.run_migrations()
