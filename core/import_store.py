"""The storing half of a contacts import: prepare rows, find duplicates, merge, insert.

No row that names a person is dropped:

- a number that is no valid number for the region (``7788990`` without area
  code) is stored as written (found by the suffix lookup and search) with a
  warning; a cell without any digit, or too long to store, is left out with a
  warning, as is an invalid e-mail address; the contact is imported with the rest;
- a row is a duplicate only of a contact (or an earlier row) with the same
  e-mail address, or with the same name *and* a common number (a row with
  neither number nor address: of one with the same name and neither). A number shared
  by different people (a switchboard) is no duplicate: the row is imported with
  the warning "shares +49... with contact K (name)" or "with row N";
- with ``update`` a duplicate is merged into the contact: empty names and
  organization filled in, new numbers and addresses added, nothing overwritten.

The functions here are synchronous, on a plain connection, for
:meth:`core.dbthread.DbWorker.run` (one transaction per batch).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from core.contacts import ContactInput, EmailInput, PreparedContact, prepare_contact, valid_email
from core.errors import InvalidInput
from core.importer import (
    ImportOptions,
    ImportReport,
    RawRow,
    RowDuplicate,
    RowError,
    RowWarning,
)
from core.models import Contact, EmailAddress, Organization, PhoneNumber
from core.phones import NormalisedNumber, normalise, rev_digits

_CHUNK = 500
_NAME = "\0name:"
"""Prefix of the name key of a row without numbers and addresses (no e-mail has a NUL)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A row made ready to store, with the warnings that came up on the way."""

    row: int
    contact: PreparedContact | None
    warnings: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class Known:
    """A contact already in the database that owns one of the row's keys."""

    contact_id: int
    name: str


@dataclass(slots=True)
class FileState:
    """What an import has seen so far (across batches) and its report in the making."""

    options: ImportOptions
    by_email: dict[str, int] = field(default_factory=dict)
    by_name_phone: dict[tuple[str, str], int] = field(default_factory=dict)
    by_phone: dict[str, int] = field(default_factory=dict)
    contact_of_row: dict[int, int | None] = field(default_factory=dict)
    pending: dict[int, PreparedContact] = field(default_factory=dict)
    created: int = 0
    updated: set[int] = field(default_factory=set)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowWarning] = field(default_factory=list)
    duplicates: list[RowDuplicate] = field(default_factory=list)
    first_rows: dict[int, int] = field(default_factory=dict)  # duplicate row -> its first row

    def report(self, rows: int) -> ImportReport:
        """The report of everything seen so far."""
        duplicates = [
            replace(d, contact_id=self.contact_of_row.get(self.first_rows[d.row]))
            if d.contact_id is None and d.row in self.first_rows
            else d
            for d in self.duplicates
        ]
        return ImportReport(
            created=self.created,
            errors=tuple(self.errors),
            duplicates=tuple(sorted(duplicates, key=lambda d: d.row)),
            warnings=tuple(sorted(self.warnings, key=lambda w: w.row)),
            updated=len(self.updated),
            rows=rows,
            dry_run=self.options.dry_run,
        )


# --- preparing (pure) ----------------------------------------------------------


def prepare_batch(rows: Sequence[RawRow], region: str) -> list[Prepared]:
    """Every row prepared; never raises for a bad value."""
    return [prepare_row(raw, region) for raw in rows]


def prepare_row(raw: RawRow, region: str) -> Prepared:
    """Names cut to their columns, numbers parsed, bad values left out with a warning."""
    warnings: list[str] = []
    phones = _phones(raw.phones, region, warnings)
    emails = _emails(raw.emails, warnings)
    data = ContactInput(
        first_name=raw.first_name[:100],
        last_name=raw.last_name[:100],
        display_name=raw.name[:200] or None,
        organization=raw.organization[:200] or None,
        emails=tuple(EmailInput(address=address, label=label) for label, address in emails),
    )
    if not (raw.name or raw.first_name or raw.last_name or raw.organization or emails):
        if not phones:
            return Prepared(raw.row, None, tuple(warnings), "no name, company, phone or e-mail")
        data = data.model_copy(update={"display_name": phones[0][0].raw})
    contact = replace(prepare_contact(data, region), phones=tuple(phones))
    return Prepared(raw.row, contact, tuple(warnings))


def _phones(
    cells: Iterable[tuple[str, str]], region: str, warnings: list[str]
) -> list[tuple[NormalisedNumber, str]]:
    phones: list[tuple[NormalisedNumber, str]] = []
    for label, value in cells:
        number = normalise(value, region) if len(value) <= 64 else None
        if number is None:
            why = "is too long" if len(value) > 64 else "has no phone number"
            warnings.append(f"{label} {value[:30]!r} {why}: left out")
        else:
            if number.kind == "raw":
                warnings.append(
                    f"{label} {value!r} is not a valid number for {region}: stored as written"
                )
            phones.append((number, label[:40]))
    return phones


def _emails(cells: Iterable[tuple[str, str]], warnings: list[str]) -> list[tuple[str, str]]:
    emails: list[tuple[str, str]] = []
    for label, value in cells:
        try:
            emails.append((label[:40], valid_email(value, label)))
        except InvalidInput:
            warnings.append(f"{label}: invalid e-mail address {value[:60]!r}: left out")
    return emails


def phone_key(number: NormalisedNumber) -> str:
    """What makes two numbers the same: the E.164 form, else the digits."""
    return number.e164 or number.digits


def name_key(contact: PreparedContact) -> str:
    """The display name, case and spacing folded."""
    return " ".join(contact.display_name.split()).casefold()


# --- storing (one batch, one transaction) --------------------------------------


def store_batch(state: FileState, batch: Sequence[Prepared], conn: Connection) -> None:
    """Decide for every row of the batch, then write the new contacts and the merges."""
    ready = [p for p in batch if p.contact is not None]
    phones_known = _phone_owners(conn, {phone_key(n) for p in ready for n, _ in _c(p).phones})
    emails_known = _email_owners(conn, {a for p in ready for a, _ in _c(p).emails})
    bare = {_c(p).display_name for p in ready if not (_c(p).phones or _c(p).emails)}
    emails_known |= _name_owners(conn, bare)
    for prepared in batch:
        state.warnings += [RowWarning(prepared.row, w) for w in prepared.warnings]
        if prepared.contact is None:
            state.errors.append(RowError(prepared.row, prepared.error))
            continue
        _decide(state, prepared.row, prepared.contact, phones_known, emails_known, conn)
    _flush_pending(state, conn)


def _c(prepared: Prepared) -> PreparedContact:
    assert prepared.contact is not None
    return prepared.contact


def _decide(
    state: FileState,
    row: int,
    contact: PreparedContact,
    phones_known: dict[str, list[Known]],
    emails_known: dict[str, Known],
    conn: Connection,
) -> None:
    keys = [phone_key(n) for n, _ in contact.phones]
    name = name_key(contact)
    known = _known_duplicate(contact, keys, name, phones_known, emails_known)
    if known is not None:
        owner, why = known
        _existing_duplicate(state, row, contact, owner, why, conn)
        _remember(state, row, contact, keys, name)  # later rows may repeat this one
        state.contact_of_row[row] = owner.contact_id
        return
    earlier = _earlier_duplicate(state, contact, keys, name)
    if earlier is not None:
        first, why = earlier
        _file_duplicate(state, row, contact, first, why, conn)
        return
    for key in keys:
        shared = phones_known.get(key, [])
        said = ", ".join(f"contact {k.contact_id} ({k.name})" for k in shared[:3])
        if key in state.by_phone:
            said = ", ".join(filter(None, (said, f"row {state.by_phone[key]}")))
        if said:
            state.warnings.append(RowWarning(row, f"shares {key} with {said}: imported"))
    _remember(state, row, contact, keys, name)
    state.pending[row] = contact


def _known_duplicate(
    contact: PreparedContact,
    keys: list[str],
    name: str,
    phones_known: dict[str, list[Known]],
    emails_known: dict[str, Known],
) -> tuple[Known, str] | None:
    for address, _ in contact.emails:
        if address in emails_known:
            return emails_known[address], f"e-mail {address}"
    if not (contact.emails or keys) and _NAME + name in emails_known:
        return emails_known[_NAME + name], "name"
    for key in keys:
        for owner in phones_known.get(key, []):
            if " ".join(owner.name.split()).casefold() == name:
                return owner, f"name and {key}"
    return None


def _earlier_duplicate(
    state: FileState, contact: PreparedContact, keys: list[str], name: str
) -> tuple[int, str] | None:
    for address, _ in contact.emails:
        if address in state.by_email:
            return state.by_email[address], f"e-mail {address}"
    if not (contact.emails or keys) and _NAME + name in state.by_email:
        return state.by_email[_NAME + name], "name"
    for key in keys:
        if (name, key) in state.by_name_phone:
            return state.by_name_phone[(name, key)], f"name and {key}"
    return None


def _remember(
    state: FileState, row: int, contact: PreparedContact, keys: list[str], name: str
) -> None:
    for address, _ in contact.emails:
        state.by_email.setdefault(address, row)
    if not (contact.emails or keys):
        state.by_email.setdefault(_NAME + name, row)
    for key in keys:
        state.by_name_phone.setdefault((name, key), row)
        state.by_phone.setdefault(key, row)


def _existing_duplicate(
    state: FileState, row: int, contact: PreparedContact, owner: Known, why: str, conn: Connection
) -> None:
    said = f"{why} already belongs to contact {owner.contact_id} ({owner.name})"
    if not state.options.update:
        state.duplicates.append(RowDuplicate(row, owner.contact_id, f"{said}: skipped"))
        return
    if not state.options.dry_run:
        _merge_into_stored(conn, owner.contact_id, contact)
    state.updated.add(owner.contact_id)
    state.duplicates.append(RowDuplicate(row, owner.contact_id, f"{said}: merged", merged=True))


def _file_duplicate(
    state: FileState, row: int, contact: PreparedContact, first: int, why: str, conn: Connection
) -> None:
    target = state.contact_of_row.get(first)
    state.first_rows[row] = first
    said = f"{why} already in row {first} of this file"
    if not state.options.update:
        state.duplicates.append(RowDuplicate(row, target, f"{said}: skipped"))
        return
    if first in state.pending:
        state.pending[first] = merge_prepared(state.pending[first], contact)
    elif target is not None:
        _merge_into_stored(conn, target, contact)
    state.duplicates.append(RowDuplicate(row, target, f"{said}: merged", merged=True))


def merge_prepared(into: PreparedContact, more: PreparedContact) -> PreparedContact:
    """``into`` with its empty fields filled from ``more`` and its new numbers and addresses."""
    keys = {phone_key(n) for n, _ in into.phones}
    addresses = {a for a, _ in into.emails}
    return replace(
        into,
        first_name=into.first_name or more.first_name,
        last_name=into.last_name or more.last_name,
        organization=into.organization or more.organization,
        phones=into.phones + tuple(p for p in more.phones if phone_key(p[0]) not in keys),
        emails=into.emails + tuple(e for e in more.emails if e[0] not in addresses),
    )


def _phone_owners(conn: Connection, keys: set[str]) -> dict[str, list[Known]]:
    """Every contact that has one of these numbers (E.164, or the digits of a raw one)."""
    owners: dict[str, list[Known]] = defaultdict(list)
    e164s = sorted(k for k in keys if k.startswith("+"))
    reversed_digits = {k[::-1]: k for k in keys if not k.startswith("+")}
    for column, values, key_of in (
        (PhoneNumber.e164, e164s, str),
        (PhoneNumber.rev_digits, sorted(reversed_digits), reversed_digits.__getitem__),
    ):
        for value, cid, name in _owned(conn, column, PhoneNumber.contact_id, values):
            if all(k.contact_id != cid for k in owners[key_of(value)]):
                owners[key_of(value)].append(Known(cid, name))
    return owners


def _name_owners(conn: Connection, names: set[str]) -> dict[str, Known]:
    """Contacts without any number or address, by folded name (keyed ``_NAME + name``)."""
    owners: dict[str, Known] = {}
    has_phone = select(PhoneNumber.id).where(PhoneNumber.contact_id == Contact.id).exists()
    has_email = select(EmailAddress.id).where(EmailAddress.contact_id == Contact.id).exists()
    ordered = sorted(names)
    for start in range(0, len(ordered), _CHUNK):
        query = (
            select(Contact.id, Contact.display_name)
            .where(
                Contact.display_name.in_(ordered[start : start + _CHUNK]), ~has_phone, ~has_email
            )
            .order_by(Contact.id)
        )
        for cid, display in conn.execute(query):
            owners.setdefault(_NAME + " ".join(display.split()).casefold(), Known(cid, display))
    return owners


def _email_owners(conn: Connection, addresses: set[str]) -> dict[str, Known]:
    owners: dict[str, Known] = {}
    for value, cid, name in _owned(
        conn, EmailAddress.address, EmailAddress.contact_id, sorted(addresses)
    ):
        owners.setdefault(value, Known(cid, name))
    return owners


def _owned(
    conn: Connection, column: Any, contact_column: Any, values: Sequence[str]
) -> list[tuple[str, int, str]]:
    found: list[tuple[str, int, str]] = []
    for start in range(0, len(values), _CHUNK):
        query = (
            select(column, Contact.id, Contact.display_name)
            .join(Contact, Contact.id == contact_column)
            .where(column.in_(values[start : start + _CHUNK]))
            .order_by(Contact.id)
        )
        found += [(value, cid, name) for value, cid, name in conn.execute(query)]
    return found


def _flush_pending(state: FileState, conn: Connection) -> None:
    """Insert the batch's new contacts with their numbers and addresses."""
    rows, contacts = list(state.pending), list(state.pending.values())
    state.pending.clear()
    state.created += len(contacts)
    if state.options.dry_run or not contacts:
        state.contact_of_row.update((row, None) for row in rows)
        return
    org_ids = _organization_ids(conn, {c.organization for c in contacts if c.organization})
    now = datetime.now(UTC)
    statement = insert(Contact).returning(Contact.id, sort_by_parameter_order=True)
    values = [_contact_row(c, org_ids, now) for c in contacts]
    ids = list(conn.execute(statement, values).scalars())
    state.contact_of_row.update(zip(rows, ids, strict=True))
    _insert(conn, PhoneNumber, [_phone_row(cid, n, lb) for c, cid in zip(contacts, ids, strict=True)
                                for n, lb in c.phones])  # fmt: skip
    _insert(conn, EmailAddress, [{"contact_id": cid, "address": a, "label": lb}
                                 for c, cid in zip(contacts, ids, strict=True)
                                 for a, lb in c.emails])  # fmt: skip


def _organization_ids(conn: Connection, names: set[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    ordered = sorted(names)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        query = select(Organization.name, Organization.id).where(Organization.name.in_(chunk))
        for name, oid in conn.execute(query.order_by(Organization.id)):
            ids.setdefault(name, oid)
    missing = [name for name in ordered if name not in ids]
    if missing:
        now = datetime.now(UTC)
        statement = insert(Organization).returning(Organization.id, sort_by_parameter_order=True)
        new = conn.execute(statement, [{"name": n, "created_at": now} for n in missing]).scalars()
        ids.update(zip(missing, new, strict=True))
    return ids


def _contact_row(c: PreparedContact, org_ids: dict[str, int], now: datetime) -> dict[str, Any]:
    return {
        "first_name": c.first_name,
        "last_name": c.last_name,
        "display_name": c.display_name,
        "organization_id": org_ids.get(c.organization or ""),
        "search_key": c.search_key(),
        "created_at": now,
        "updated_at": now,
    }


def _phone_row(contact_id: int, number: NormalisedNumber, label: str) -> dict[str, Any]:
    return {
        "contact_id": contact_id,
        "raw": number.raw,
        "e164": number.e164,
        "rev_digits": rev_digits(number),
        "label": label,
    }


def _insert(conn: Connection, model: type[Any], rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(model), rows)


def _merge_into_stored(conn: Connection, contact_id: int, more: PreparedContact) -> None:
    """Fill the stored contact's empty fields and add its new numbers and addresses."""
    row = conn.execute(select(Contact).where(Contact.id == contact_id)).mappings().one()
    org = None
    if row["organization_id"] is not None:
        org = conn.scalar(
            select(Organization.name).where(Organization.id == row["organization_id"])
        )
    phones = conn.execute(
        select(PhoneNumber.e164, PhoneNumber.rev_digits).where(PhoneNumber.contact_id == contact_id)
    ).all()
    known_keys = {e164 or digits[::-1] for e164, digits in phones}
    addresses = set(conn.scalars(select(EmailAddress.address).where(
        EmailAddress.contact_id == contact_id)))  # fmt: skip
    stored = PreparedContact(row["first_name"], row["last_name"], row["display_name"], org, (), ())
    merged = merge_prepared(stored, more)
    organization_id = row["organization_id"]
    if organization_id is None and merged.organization:
        organization_id = _organization_ids(conn, {merged.organization})[merged.organization]
    conn.execute(
        update(Contact)
        .where(Contact.id == contact_id)
        .values(
            first_name=merged.first_name,
            last_name=merged.last_name,
            organization_id=organization_id,
            search_key=merged.search_key(row["tags"] or ()),
            updated_at=datetime.now(UTC),
        )
    )
    _insert(conn, PhoneNumber, [_phone_row(contact_id, n, lb) for n, lb in more.phones
                                if phone_key(n) not in known_keys])  # fmt: skip
    _insert(conn, EmailAddress, [{"contact_id": contact_id, "address": a, "label": lb}
                                 for a, lb in more.emails if a not in addresses])  # fmt: skip
