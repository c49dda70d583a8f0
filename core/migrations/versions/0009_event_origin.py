"""events.origin: a write of the bus repeated after a lost answer inserts nothing twice

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 08:40:00

A bus writer whose commit was acknowledged but whose answer was lost with the
connection sends the batch again. Each event now carries its origin (the
publishing process's random id and the event's number there), unique, and the
insert skips an event already there (``ON CONFLICT DO NOTHING``): the repeat adds
nothing. Older rows have none (NULL: several are allowed).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=40), nullable=True))
    op.create_index("ix_events_origin", "events", ["origin"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_events_origin", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("origin")
