"""wrap-up and search: call dispositions, how a contact was matched, contact tags, search keys

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:00:00

- ``calls.disposition`` (+ by, at): the outcome code an agent chose;
- ``call_contacts.match``: how the contact was matched to the call (existing links were
  made by the lookup, exact or by the last digits: they are marked ``exact``);
- ``contacts.tags`` and ``contacts.search_key``: names, organization and tags folded
  for search (ü = ue, ß = ss). The folding is that of ``core.search.search_key`` as of
  this revision, copied so that the migration does not change with the code.

Columns are added, no table is rebuilt.
"""

import unicodedata
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BATCH = 5_000
_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})

_contacts = sa.table(
    "contacts",
    sa.column("id", sa.Integer()),
    sa.column("first_name", sa.String()),
    sa.column("last_name", sa.String()),
    sa.column("display_name", sa.String()),
    sa.column("organization_id", sa.Integer()),
    sa.column("search_key", sa.Text()),
)
_organizations = sa.table("organizations", sa.column("id", sa.Integer()), sa.column("name"))


def upgrade() -> None:
    op.add_column("calls", sa.Column("disposition", sa.String(length=40), nullable=True))
    op.add_column("calls", sa.Column("disposition_by", sa.Integer(), nullable=True))
    op.add_column("calls", sa.Column("disposition_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "call_contacts",
        sa.Column("match", sa.String(length=10), server_default="exact", nullable=False),
    )
    op.add_column("contacts", sa.Column("search_key", sa.Text(), server_default="", nullable=False))
    op.add_column("contacts", sa.Column("tags", sa.JSON(), server_default="[]", nullable=False))
    conn = op.get_bind()
    for rows in _batches(conn):
        conn.execute(
            sa.update(_contacts)
            .where(_contacts.c.id == sa.bindparam("cid"))
            .values(search_key=sa.bindparam("key")),
            rows,
        )


def _batches(conn: sa.Connection) -> Iterator[list[dict[str, Any]]]:
    last = 0
    org = _organizations
    while True:
        query = (
            sa.select(_contacts, org.c.name)
            .outerjoin(org, org.c.id == _contacts.c.organization_id)
            .where(_contacts.c.id > last)
            .order_by(_contacts.c.id)
            .limit(BATCH)
        )
        rows = conn.execute(query).all()
        if not rows:
            return
        last = rows[-1].id
        yield [
            {"cid": r.id, "key": _key((r.display_name, r.first_name, r.last_name, r.name))}
            for r in rows
        ]


def _key(parts: tuple[str | None, ...]) -> str:
    text = " ".join(" ".join(p for p in parts if p).split()).lower()
    german = text.translate(_GERMAN)
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
    ).replace("ß", "ss")
    return german if plain == german else f"{german} | {plain}"


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("tags")
        batch.drop_column("search_key")
    with op.batch_alter_table("call_contacts") as batch:
        batch.drop_column("match")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("disposition_at")
        batch.drop_column("disposition_by")
        batch.drop_column("disposition")
