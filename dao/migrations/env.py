"""Alembic environment: runs on the connection handed in by dao.db.upgrade."""
from alembic import context

from dao.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through dao.db.upgrade(engine) or `bssbus db upgrade`")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
