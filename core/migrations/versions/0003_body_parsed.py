"""email_messages.body_parsed: bodies and attachments are extracted after the headers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 08:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "email_messages",
        sa.Column("body_parsed", sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    op.create_index(
        "ix_email_messages_body_parsed", "email_messages", ["body_parsed", "mailbox"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_email_messages_body_parsed", table_name="email_messages")
    with op.batch_alter_table("email_messages") as batch:
        batch.drop_column("body_parsed")
