"""ami_requests: what a standby process asks the AMI link's owner to do

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 08:10:00

With several daemons on one PostgreSQL only one holds the AMI link; click-to-dial,
the call controls and live presence asked of another process are forwarded to it
through this table (``crmcomms.forwarding``): one row per request (its id chosen by
the asking process), claimed once by the owner (``taken_by``: a request is run at
most once, whoever owns the link by then), answered in ``answer`` (JSON). Created
on SQLite too (unused there: one process). Pruned by age.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ami_requests",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("op", sa.String(length=40), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("taken_by", sa.String(length=120), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
    )
    op.create_index("ix_ami_requests_created_at", "ami_requests", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ami_requests_created_at", table_name="ami_requests")
    op.drop_table("ami_requests")
