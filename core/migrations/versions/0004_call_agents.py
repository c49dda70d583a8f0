"""calls: unknown times and durations, times_uncertain, backfilled; call_agents

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 06:00:00

``call_agents`` holds the agent extensions of each call (one row per call and
extension, the ways they took part as bits), filled here from the calls
already logged. The rules are those of ``core.calls.roles_of`` as of this
revision, copied so that the migration does not change with the code.

On SQLite the ``calls`` table is rebuilt (batch mode) to drop the NOT NULL of
the durations; ``core.migrate.upgrade`` turns foreign keys off for that, or
dropping the old table would cascade to the calls' contact links.
"""

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# core.calls.AgentRole as of this revision
RUNG, ANSWERED, PLACED, CALLED, TRANSFERRED, TRANSFER_TARGET = 1, 2, 8, 16, 32, 64
BATCH = 5_000

_calls = sa.table(
    "calls",
    sa.column("id", sa.Integer()),
    sa.column("direction", sa.String()),
    sa.column("caller", sa.String()),
    sa.column("callee", sa.String()),
    sa.column("agents_rung", sa.JSON()),
    sa.column("answered_by", sa.String()),
    sa.column("transfers", sa.JSON()),
    sa.column("started_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    _check_foreign_keys_off()
    with op.batch_alter_table("calls") as batch:
        batch.add_column(
            sa.Column("times_uncertain", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(
            sa.Column("backfilled", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.alter_column("ring_seconds", existing_type=sa.Integer(), nullable=True)
        batch.alter_column("talk_seconds", existing_type=sa.Integer(), nullable=True)
    call_agents = op.create_table(
        "call_agents",
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("extension", sa.String(length=32), nullable=False),
        sa.Column("roles", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("call_id", "extension"),
    )
    op.create_index(
        "ix_call_agents_extension_started",
        "call_agents",
        ["extension", "started_at", "call_id"],
        unique=False,
    )
    conn = op.get_bind()
    for rows in _batches(conn):
        conn.execute(sa.insert(call_agents), rows)


def _check_foreign_keys_off() -> None:
    """Refuse to rebuild ``calls`` on SQLite with foreign keys on (it would empty call_contacts)."""
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    if (
        conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
        and conn.execute(sa.select(sa.func.count()).select_from(_calls)).scalar()
    ):
        raise RuntimeError("migration 0004 needs PRAGMA foreign_keys=OFF (core.migrate.upgrade)")


def _batches(conn: sa.Connection) -> Iterator[list[dict[str, Any]]]:
    """The call_agents rows of the logged calls, by batches of calls in id order."""
    last = 0
    while True:
        query = sa.select(_calls).where(_calls.c.id > last).order_by(_calls.c.id).limit(BATCH)
        calls = conn.execute(query).all()
        if not calls:
            return
        last = calls[-1].id
        yield [
            {"call_id": call.id, "extension": ext, "roles": roles, "started_at": call.started_at}
            for call in calls
            for ext, roles in _roles(call).items()
        ]


def _roles(call: Any) -> dict[str, int]:
    roles: dict[str, int] = {}

    def add(ext: str | None, role: int) -> None:
        if ext:
            roles[ext] = roles.get(ext, 0) | role

    for ext in call.agents_rung or ():
        add(ext, RUNG)
    add(call.answered_by, ANSWERED)
    if call.direction in ("outbound", "internal"):
        add(call.caller, PLACED)
    if call.direction == "internal":
        add(call.callee, CALLED)
    for transfer in call.transfers or ():
        add(transfer.get("from"), TRANSFERRED)
        add(transfer.get("to"), TRANSFER_TARGET)
    return roles


def downgrade() -> None:
    op.drop_index("ix_call_agents_extension_started", table_name="call_agents")
    op.drop_table("call_agents")
    op.execute("UPDATE calls SET ring_seconds = 0 WHERE ring_seconds IS NULL")
    op.execute("UPDATE calls SET talk_seconds = 0 WHERE talk_seconds IS NULL")
    with op.batch_alter_table("calls") as batch:
        batch.alter_column("talk_seconds", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("ring_seconds", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("backfilled")
        batch.drop_column("times_uncertain")
