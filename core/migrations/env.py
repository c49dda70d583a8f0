"""Alembic environment: runs on the connection handed over by core.migrate."""

from alembic import context

import core.mail.models  # noqa: F401  (registers the mail tables on Base)
from core.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `crmcomms db upgrade`")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
