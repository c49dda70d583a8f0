"""The fast MIME tree builder gives the stdlib parser's tree, or declines."""

from __future__ import annotations

import random
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest

import core.mail.parse
from core.mail.mime_tree import mime_tree
from core.mail.parse import parse_body

MAIL = Path(__file__).parent.parent / "fixtures" / "mail"
CORPUS = sorted(MAIL.glob("*.eml"))


def shape(message: Message) -> Any:
    """Everything of a tree the body parser can read: headers as stored, payloads."""
    payload = message.get_payload()
    inner = [shape(part) for part in payload] if isinstance(payload, list) else payload
    return (message.items(), message.get_unixfrom(), inner)


def generated(n: int) -> bytes:
    """A message in one of the shapes clients write: plain, alternative, with a file,
    related HTML with an inline image; LF or CRLF."""
    rng = random.Random(n)
    mime = EmailMessage()
    mime["From"] = f"Kunde {n} <kunde{n}@example.org>"
    mime["To"] = "support@company.test"
    mime["Subject"] = f"Bestellung {n}: Größe {'x' * rng.randint(0, 80)}"
    mime.set_content("Grüße\n" * rng.randint(1, 40))
    if n % 2:
        mime.add_alternative(f"<p>Grüße {n}</p>", subtype="html")
    if n % 3 == 0:
        mime.add_attachment(rng.randbytes(3000), maintype="application", subtype="pdf",
                            filename=f"r{n}.pdf")  # fmt: skip
    if n % 5 == 0:
        html = mime.get_body(("html",)) if n % 2 else None
        if html is not None:
            html.add_related(b"GIF89a", maintype="image", subtype="gif", cid="<img@x>")
    raw = mime.as_bytes()
    return raw.replace(b"\n", b"\r\n") if n % 4 < 2 else raw


@pytest.mark.parametrize("raw", [generated(n) for n in range(60)], ids=lambda _: "generated")
def test_well_formed_mail_takes_the_fast_path_with_the_stdlib_tree(raw: bytes) -> None:
    tree = mime_tree(raw)
    assert tree is not None
    assert shape(tree) == shape(message_from_bytes(raw, policy=compat32))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_tree_is_the_stdlib_tree_or_declined(path: Path) -> None:
    raw = path.read_bytes()
    tree = mime_tree(raw)
    if tree is not None:
        assert shape(tree) == shape(message_from_bytes(raw, policy=compat32))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_body_is_the_same_either_way(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = path.read_bytes()
    fast = parse_body(raw)
    monkeypatch.setattr(core.mail.parse, "mime_tree", lambda _raw: None)
    assert parse_body(raw) == fast


def test_prefixes_of_a_multipart_are_declined_or_equal() -> None:
    raw = generated(15)
    for end in range(0, len(raw), 97):
        tree = mime_tree(raw[:end])
        if tree is not None:
            assert shape(tree) == shape(message_from_bytes(raw[:end], policy=compat32))
