"""Which folders a mailbox mirrors, and where its Sent folder is, on any standard hierarchy.

Servers lay their folders out differently: Dovecot usually ``Sent`` beside
``INBOX`` with ``/``; Cyrus and Courier ``INBOX.Sent`` (the personal namespace
is ``INBOX.``); Gmail ``[Gmail]/Sent Mail``; Exchange and localised servers
``Sent Items``, ``Gesendete Objekte``... The order of trust: the SPECIAL-USE
attribute ``\\Sent`` (RFC 6154), then a well-known name in the personal
namespace (RFC 2342), then the same name at the root or below INBOX.

Pure functions of what LIST and NAMESPACE answered; :func:`mirrored_folders`
and :func:`sent_folder_of` are the one definition both the sync and the
outbox use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from crmcomms.mail.imap_responses import ListedFolder, Namespace

#: Names clients and servers give the Sent folder (as LIST spells them: modified UTF-7).
SENT_NAMES = (
    "Sent",
    "Sent Items",
    "Sent Messages",
    "Sent Mail",
    "Gesendet",
    "Gesendete Objekte",
    "Gesendete Elemente",
    "Envoy&AOk-s",  # Envoyés
    "&AMk-l&AOk-ments envoy&AOk-s",  # Éléments envoyés
    "Elementos enviados",
    "Enviados",
    "Posta inviata",
    "Verzonden items",
    "Skickat",
)


def _candidates(
    names: Iterable[str], namespace: Namespace, listed: Sequence[ListedFolder]
) -> list[str]:
    """``names`` in the personal namespace, at the root, and below INBOX (each delimiter)."""
    delimiters = {f.delimiter for f in listed if f.delimiter} | {namespace.delimiter or "/"}
    prefixes = [namespace.prefix, "", *(f"INBOX{d}" for d in sorted(delimiters))]
    found: list[str] = []
    for prefix in dict.fromkeys(prefixes):
        found += [prefix + name for name in names]
    return found


def find_sent(listed: Sequence[ListedFolder], namespace: Namespace) -> str | None:
    """The Sent folder: marked ``\\Sent``, else the first well-known name that exists."""
    for folder in listed:
        if "\\sent" in folder.flags:
            return folder.name
    exact = {f.name for f in listed}
    folded = {f.name.casefold(): f.name for f in listed}
    for name in _candidates(SENT_NAMES, namespace, listed):
        if name in exact:
            return name
        if name.casefold() in folded:
            return folded[name.casefold()]
    return None


def sent_folder_of(listed: Sequence[ListedFolder], namespace: Namespace) -> str:
    """Where to APPEND the Sent copy: the Sent folder, else ``Sent`` in the personal
    namespace (``INBOX.Sent`` on Cyrus and Courier, ``Sent`` elsewhere)."""
    return find_sent(listed, namespace) or namespace.prefix + "Sent"


def resolve_folder(name: str, listed: Sequence[ListedFolder], namespace: Namespace) -> str:
    """A configured folder name as the server spells it: as given when it exists, else in
    the personal namespace (``Archive`` -> ``INBOX.Archive``), else matched ignoring case;
    unknown names are kept (the sync reports them)."""
    if name.upper() == "INBOX":
        return "INBOX"
    exact = {f.name for f in listed}
    folded = {f.name.casefold(): f.name for f in listed}
    for candidate in (name, namespace.prefix + name):
        if candidate in exact:
            return candidate
    for candidate in (name, namespace.prefix + name):
        if candidate.casefold() in folded:
            return folded[candidate.casefold()]
    return name


def mirrored_folders(
    configured: Sequence[str], listed: Sequence[ListedFolder], namespace: Namespace
) -> list[str]:
    """The folders a mailbox mirrors: the configured ones as the server names them, else
    INBOX and the Sent folder."""
    if configured:
        chosen = [resolve_folder(name, listed, namespace) for name in configured]
    else:
        sent = find_sent(listed, namespace)
        chosen = ["INBOX", *([sent] if sent else [])]
    return list(dict.fromkeys(chosen))
