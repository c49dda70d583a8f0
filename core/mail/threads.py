"""Sans-I/O conversation threading.

The persistence layer does the lookups, this module decides. Per message:

1. ``lookup_ids(msg)`` names the ids worth looking up: the message's own
   Message-ID, its In-Reply-To, then its References from the nearest parent
   back to the root. The caller maps each id it knows to a thread id. It
   should know the ids of stored messages *and* the ids those messages
   referenced, so that a parent fetched after its reply joins the reply's
   thread, and a re-fetched or duplicated message rejoins its own.
2. ``subject_key(msg)`` names the subject to fetch candidate threads for.
3. ``assign_thread(msg, known, candidates, policy)`` decides, first rule wins:

   a. **reference**: the first id of ``lookup_ids`` found in ``known``;
   b. **subject**: a candidate thread with the same normalised subject
      (non-empty), whose participants overlap the message's (the same set of
      addresses, or at least one *external* address in common: one outside
      ``policy.internal_domains``/``internal_addresses``; configure these, or
      the company's own support address links every customer's "Invoice"),
      and whose time span, widened by ``policy.window`` (30 days), holds the
      message date. No date, no subject match. Among several, the nearest
      in time wins, then the most recent, then the smallest id;
   c. **new**: a new thread whose id is the message's Message-ID, else its
      content hash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from core.mail.addresses import Address

_PREFIX = re.compile(
    r"\s*(?:re|aw|antw|antwort|fwd?|wg|sv|vs|tr|rv|rif|odp|ynt|vl|enc|res)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*",
    re.IGNORECASE,
)
_LIST_TAG = re.compile(r"\s*\[[^\]]*\]\s*")
_SPACES = re.compile(r"\s+")


class ThreadReason(StrEnum):
    """Which rule placed a message in its thread."""

    REFERENCE = "reference"
    SUBJECT = "subject"
    NEW = "new"


class HasThreadHeaders(Protocol):
    """What threading reads from a message: MailHeaders and MailItem both fit."""

    @property
    def message_id(self) -> str | None: ...
    @property
    def in_reply_to(self) -> str | None: ...
    @property
    def references(self) -> tuple[str, ...]: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def from_(self) -> tuple[Address, ...]: ...
    @property
    def to(self) -> tuple[Address, ...]: ...
    @property
    def cc(self) -> tuple[Address, ...]: ...
    @property
    def date(self) -> datetime | None: ...
    @property
    def content_hash(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ThreadInput:
    """The facts about one message that threading uses."""

    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str | None
    participants: frozenset[str]
    date: datetime | None
    content_hash: str

    @classmethod
    def of(cls, message: HasThreadHeaders) -> ThreadInput:
        """Build from a parsed message; participants are From, To and Cc."""
        people = (*message.from_, *message.to, *message.cc)
        return cls(
            message_id=message.message_id,
            in_reply_to=message.in_reply_to,
            references=message.references,
            subject=message.subject,
            participants=frozenset(a.address for a in people),
            date=message.date,
            content_hash=message.content_hash,
        )


@dataclass(frozen=True, slots=True)
class ThreadCandidate:
    """An existing thread the persistence layer offers for subject matching."""

    thread_id: str
    subject_key: str
    participants: frozenset[str]
    first_date: datetime
    last_date: datetime


@dataclass(frozen=True, slots=True)
class ThreadPolicy:
    """Settings of the subject fallback; addresses and domains lower-case."""

    window: timedelta = timedelta(days=30)
    internal_domains: frozenset[str] = frozenset()
    internal_addresses: frozenset[str] = frozenset()
    strip_list_tags: bool = True


@dataclass(frozen=True, slots=True)
class ThreadDecision:
    """The thread a message belongs to, the rule, and the id that decided
    (a message id for ``reference``, the candidate thread for ``subject``)."""

    thread_id: str
    reason: ThreadReason
    matched: str | None = None


def strip_subject_prefixes(subject: str, *, strip_list_tags: bool = True) -> str:
    """Remove leading reply/forward prefixes (Re:, AW:, Fwd:, WG:, SV:, Re[2]:...)
    and, if asked, ``[list-tag]`` markers, repeatedly; keeps case."""
    while True:
        match = _PREFIX.match(subject)
        if match is None and strip_list_tags:
            match = _LIST_TAG.match(subject)
        if match is None:
            return subject.strip()
        rest = subject[match.end() :]
        if match.re is _LIST_TAG and not rest.strip():
            return subject.strip()  # a subject that is only a tag keeps it
        subject = rest


def normalise_subject(subject: str | None, *, strip_list_tags: bool = True) -> str:
    """Comparison key: prefixes stripped, whitespace collapsed, case folded."""
    if not subject:
        return ""
    stripped = strip_subject_prefixes(subject, strip_list_tags=strip_list_tags)
    return _SPACES.sub(" ", stripped).strip().casefold()


def lookup_ids(msg: ThreadInput) -> tuple[str, ...]:
    """Ids to look up, in the order rule (a) tries them."""
    ordered = (msg.message_id, msg.in_reply_to, *reversed(msg.references))
    return tuple(dict.fromkeys(i for i in ordered if i))


def subject_key(msg: ThreadInput, policy: ThreadPolicy | None = None) -> str:
    """The normalised subject to fetch candidate threads by ('' means none)."""
    strip = policy.strip_list_tags if policy is not None else True
    return normalise_subject(msg.subject, strip_list_tags=strip)


def assign_thread(
    msg: ThreadInput,
    known: Mapping[str, str],
    candidates: Sequence[ThreadCandidate],
    policy: ThreadPolicy | None = None,
) -> ThreadDecision:
    """Choose the thread of ``msg`` by the rules in the module docstring."""
    policy = policy or ThreadPolicy()
    for message_id in lookup_ids(msg):
        if message_id in known:
            return ThreadDecision(known[message_id], ThreadReason.REFERENCE, message_id)
    match = _subject_match(msg, candidates, policy)
    if match is not None:
        return ThreadDecision(match.thread_id, ThreadReason.SUBJECT, match.thread_id)
    return ThreadDecision(msg.message_id or msg.content_hash, ThreadReason.NEW)


def _subject_match(
    msg: ThreadInput, candidates: Sequence[ThreadCandidate], policy: ThreadPolicy
) -> ThreadCandidate | None:
    key = subject_key(msg, policy)
    if not key or msg.date is None:
        return None
    date = msg.date
    fitting = [
        c
        for c in candidates
        if c.subject_key == key
        and _participants_overlap(msg.participants, c.participants, policy)
        and c.first_date - policy.window <= date <= c.last_date + policy.window
    ]
    if not fitting:
        return None
    return min(fitting, key=lambda c: (_distance(date, c), -c.last_date.timestamp(), c.thread_id))


def _participants_overlap(
    ours: frozenset[str], theirs: frozenset[str], policy: ThreadPolicy
) -> bool:
    if ours and ours == theirs:
        return True
    return any(_is_external(address, policy) for address in ours & theirs)


def _is_external(address: str, policy: ThreadPolicy) -> bool:
    domain = address.rpartition("@")[2]
    return address not in policy.internal_addresses and domain not in policy.internal_domains


def _distance(date: datetime, candidate: ThreadCandidate) -> timedelta:
    if date < candidate.first_date:
        return candidate.first_date - date
    return max(date - candidate.last_date, timedelta(0))
