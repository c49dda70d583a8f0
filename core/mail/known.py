"""What storing a batch needs to know of the stored mail, loaded up front in one query each.

Copies already located, messages with the batch's dedupe keys, the threads of
the ids the batch refers to, subject candidates and the contacts of its
addresses: :func:`load_known` reads them once per batch, and
:mod:`core.mail.store` registers the messages it creates in the same maps.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from core.mail.addresses import Address
from core.mail.models import EmailLocation, EmailMessage, EmailRef
from core.mail.threads import ThreadCandidate
from core.models import EmailAddress


@dataclass(frozen=True, slots=True)
class SubjectSample:
    """A stored message as subject threading sees it."""

    thread_id: str
    participants: frozenset[str]
    at: datetime


@dataclass(slots=True)
class KnownRow:
    """What a batch needs of a stored message, or of one it is about to insert (id 0)."""

    dedupe_key: str
    content_hash: str
    senders: list[str]
    subject: str
    thread_id: str
    id: int = 0


@dataclass(frozen=True, slots=True)
class Lookups:
    """The keys of a batch to look up."""

    mailbox: str
    locations: Collection[tuple[str, int, int]]  # (folder, UIDVALIDITY, UID) of located copies
    dedupe_keys: Collection[str]
    refs: Collection[str]
    subject_keys: Collection[str]
    addresses: Collection[str]


@dataclass
class Known:
    """The stored mail a batch meets, by the keys it looks things up by."""

    located: dict[tuple[str, int], KnownRow] = field(default_factory=dict)
    by_key: dict[str, KnownRow] = field(default_factory=dict)
    threads: dict[str, str] = field(default_factory=dict)
    subjects: dict[str, list[SubjectSample]] = field(default_factory=dict)
    contacts: dict[str, int] = field(default_factory=dict)

    def candidates(self, key: str) -> list[ThreadCandidate]:
        """The threads with subject key ``key`` (none for an empty key)."""
        by_thread: dict[str, list[SubjectSample]] = {}
        for sample in self.subjects.get(key, []) if key else []:
            by_thread.setdefault(sample.thread_id, []).append(sample)
        return [
            ThreadCandidate(
                thread_id,
                key,
                frozenset().union(*(s.participants for s in samples)),
                min(s.at for s in samples),
                max(s.at for s in samples),
            )
            for thread_id, samples in by_thread.items()
        ]


_ROW_COLUMNS = (
    EmailMessage.id,
    EmailMessage.dedupe_key,
    EmailMessage.content_hash,
    EmailMessage.from_,
    EmailMessage.subject,
    EmailMessage.thread_id,
)


def known_row(
    id_: int, key: str, digest: str, from_: list[dict[str, str]], subject: str, thread: str
) -> KnownRow:
    """A row of ``_ROW_COLUMNS`` (or a new message's values) as the batch keeps it."""
    return KnownRow(key, digest, sorted(a["address"] for a in from_), subject, thread, id_)


def people(addresses: Iterable[Address]) -> set[str]:
    """The non-empty addresses of ``addresses``."""
    return {a.address for a in addresses if a.address}


def load_known(session: Session, wanted: Lookups) -> Known:
    """Everything stored that the batch's keys name."""
    known = Known()
    if wanted.locations:
        _load_located(session, wanted, known)
    rows = session.execute(
        select(*_ROW_COLUMNS).where(
            EmailMessage.mailbox == wanted.mailbox,
            EmailMessage.dedupe_key.in_(set(wanted.dedupe_keys)),
        )
    )
    known.by_key = {row.dedupe_key: row for row in (known_row(*r) for r in rows)}
    _load_threads(session, wanted, known)
    if wanted.addresses:
        contacts = session.execute(
            select(EmailAddress.address, EmailAddress.contact_id).where(
                EmailAddress.address.in_(set(wanted.addresses))
            )
        )
        known.contacts = {address: contact_id for address, contact_id in contacts}
    return known


def _load_located(session: Session, wanted: Lookups, known: Known) -> None:
    pairs = {(folder, uid) for folder, _, uid in wanted.locations}
    rows = session.execute(
        select(EmailLocation.folder, EmailLocation.uid, *_ROW_COLUMNS)
        .join(EmailMessage, EmailMessage.id == EmailLocation.email_id)
        .where(
            EmailLocation.mailbox == wanted.mailbox,
            EmailLocation.uidvalidity.in_({validity for _, validity, _ in wanted.locations}),
            tuple_(EmailLocation.folder, EmailLocation.uid).in_(pairs),
        )
    )
    known.located = {(r[0], r[1]): known_row(*r[2:]) for r in rows}


def _load_threads(session: Session, wanted: Lookups, known: Known) -> None:
    if wanted.refs:
        rows = session.execute(
            select(EmailRef.ref, EmailMessage.thread_id)
            .join(EmailMessage, EmailMessage.id == EmailRef.email_id)
            .where(EmailRef.ref.in_(set(wanted.refs)))
        )
        known.threads = {ref: thread for ref, thread in rows}
    if wanted.subject_keys:
        samples = session.execute(
            select(
                EmailMessage.subject_key,
                EmailMessage.thread_id,
                EmailMessage.from_,
                EmailMessage.to,
                EmailMessage.cc,
                EmailMessage.sort_at,
            ).where(EmailMessage.subject_key.in_(set(wanted.subject_keys)))
        )
        for key, thread_id, from_, to, cc, at in samples:
            participants = frozenset(a["address"] for a in (*from_, *to, *cc))
            known.subjects.setdefault(key, []).append(SubjectSample(thread_id, participants, at))
