"""Alembic's environment: run on the connection :func:`b2bua.storage.schema.migrate` hands over."""

from __future__ import annotations

from alembic import context

from b2bua.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
