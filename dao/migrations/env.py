"""Alembic environment: runs on the connection handed in by dao.db.upgrade, or renders SQL
offline for the URL in ``config.attributes["offline_url"]`` (e.g. Oracle DDL with no server)."""
from alembic import context

from dao.models import Base

if context.is_offline_mode():
    url = context.config.attributes.get("offline_url")
    if url is None:
        raise RuntimeError("offline migrations need config.attributes['offline_url']")
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
else:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through dao.db.upgrade(engine)")
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
