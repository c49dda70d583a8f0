"""wall roll-ups of closed days; trigram indexes for contact search (PostgreSQL)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 08:00:00

- ``wall_queue_days`` / ``wall_agent_days``: the wall's additive figures of a closed
  UTC day (``core.rollups``), ``wall_days`` which days are kept and as of which
  ``wall_day_versions.version``. Triggers on ``calls`` and ``call_agents`` bump the
  version of the day of a call that changes (inserted, updated, deleted: a CDR
  backfill, a reconciliation, retention), so a kept day never outlives its calls.
  Calls that started within the last two hours (by the database's clock) bump
  nothing: ``core.rollups`` keeps a day only three hours after its end, and a call
  of the day being written need not take the same version row lock.
- PostgreSQL: ``pg_trgm`` GIN indexes on ``contacts.search_key``,
  ``phone_numbers.rev_digits`` and ``email_addresses.address``, which serve the
  search's ``LIKE '%…%'`` (``core.search``). SQLite has none (see core.search).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_DAY = sa.String(length=10)

_SQLITE_BUMP = """
INSERT INTO wall_day_versions (day, version)
SELECT date({row}.started_at), 1 WHERE {row}.started_at < datetime('now', '-2 hours')
ON CONFLICT (day) DO UPDATE SET version = version + 1;
"""

_PG_FUNCTIONS = (
    """
CREATE FUNCTION wall_bump(started timestamptz) RETURNS void LANGUAGE sql AS $$
  INSERT INTO wall_day_versions (day, version)
  SELECT to_char(timezone('UTC', started), 'YYYY-MM-DD'), 1
  WHERE started < now() - interval '2 hours'
  ON CONFLICT (day) DO UPDATE SET version = wall_day_versions.version + 1
$$
""",
    """
CREATE FUNCTION wall_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN PERFORM wall_bump(OLD.started_at); END IF;
  IF TG_OP <> 'DELETE' THEN PERFORM wall_bump(NEW.started_at); END IF;
  RETURN NULL;
END $$
""",
)

_TRIGRAM = {
    "ix_contacts_search_key_trgm": ("contacts", "search_key"),
    "ix_phone_numbers_rev_digits_trgm": ("phone_numbers", "rev_digits"),
    "ix_email_addresses_address_trgm": ("email_addresses", "address"),
}


def upgrade() -> None:
    _tables()
    if op.get_bind().dialect.name == "postgresql":
        _pg_triggers()
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, (table, column) in _TRIGRAM.items():
            op.execute(f"CREATE INDEX {name} ON {table} USING gin ({column} gin_trgm_ops)")
    else:
        _sqlite_triggers()


def _tables() -> None:
    op.create_table(
        "wall_day_versions",
        sa.Column("day", _DAY, primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_table(
        "wall_days",
        sa.Column("day", _DAY, primary_key=True),
        sa.Column("threshold", sa.Integer(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    counts = ["offered", "answered", "abandoned", "missed", "answered_within", "wait_unknown"]
    op.create_table(
        "wall_queue_days",
        sa.Column("day", _DAY, primary_key=True),
        sa.Column("threshold", sa.Integer(), primary_key=True),
        sa.Column("line", sa.String(length=80), primary_key=True),
        sa.Column("queue", sa.String(length=80), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in counts),
        sa.Column("talk_count", sa.Integer(), nullable=False),
        sa.Column("talk_seconds", sa.BigInteger(), nullable=False),
        sa.Column("wait_count", sa.Integer(), nullable=False),
        sa.Column("wait_sum", sa.Float(), nullable=True),
        sa.Column("longest_wait", sa.Float(), nullable=True),
    )
    op.create_table(
        "wall_agent_days",
        sa.Column("day", _DAY, primary_key=True),
        sa.Column("threshold", sa.Integer(), primary_key=True),
        sa.Column("extension", sa.String(length=32), primary_key=True),
        *(sa.Column(n, sa.Integer(), nullable=False) for n in ("answered", "missed", "placed")),
        sa.Column("talk_count", sa.Integer(), nullable=False),
        sa.Column("talk_seconds", sa.BigInteger(), nullable=False),
    )


def _sqlite_triggers() -> None:
    for table in ("calls", "call_agents"):
        op.execute(
            f"CREATE TRIGGER wall_{table}_insert AFTER INSERT ON {table} BEGIN"
            f"{_SQLITE_BUMP.format(row='NEW')}END"
        )
        op.execute(
            f"CREATE TRIGGER wall_{table}_update AFTER UPDATE ON {table} BEGIN"
            f"{_SQLITE_BUMP.format(row='OLD')}{_SQLITE_BUMP.format(row='NEW')}END"
        )
        op.execute(
            f"CREATE TRIGGER wall_{table}_delete AFTER DELETE ON {table} BEGIN"
            f"{_SQLITE_BUMP.format(row='OLD')}END"
        )


def _pg_triggers() -> None:
    for function in _PG_FUNCTIONS:
        op.execute(function)
    for table in ("calls", "call_agents"):
        op.execute(
            f"CREATE TRIGGER wall_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION wall_changed()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in _TRIGRAM:
            op.execute(f"DROP INDEX {name}")
        for table in ("calls", "call_agents"):
            op.execute(f"DROP TRIGGER wall_{table} ON {table}")
        op.execute("DROP FUNCTION wall_changed()")
        op.execute("DROP FUNCTION wall_bump(timestamptz)")
    else:
        for table in ("calls", "call_agents"):
            for kind in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER wall_{table}_{kind}")
    for table in ("wall_agent_days", "wall_queue_days", "wall_days", "wall_day_versions"):
        op.drop_table(table)
