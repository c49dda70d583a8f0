"""events: the push events of the PostgreSQL bus (several daemons on one database)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:30:00

One row per event pushed to the agents' browsers, numbered by the table's own
sequence (the ``seq`` every process sends), with its type, audience and payload
(JSON text, put into the websocket frame as is). Written and read by
``crmcomms.pgbus``; created on SQLite too (unused there: one process numbers its
events in memory). Pruned by age.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("everyone", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("extensions", sa.JSON(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index("ix_events_created_at", "events", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_events_created_at", table_name="events")
    op.drop_table("events")
