"""Signed media URLs and websocket tickets (crmcomms.web.signing), with a clock in hand."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from crmcomms.config import parse_settings
from crmcomms.web.signing import MEDIA_TTL, TICKET_TTL, UrlSigner, signing_key

KEY = b"k" * 32
PATH = "/api/calls/12/recording"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def test_a_media_url_is_good_for_its_path_agent_and_time_only() -> None:
    clock = Clock()
    signer = UrlSigner(KEY, clock)
    q = query(signer.sign_media(PATH, 7))
    assert signer.check_media(PATH, q["exp"], q["agent"], q["sig"]) is not None
    assert signer.check_media(PATH, q["exp"], q["agent"], q["sig"]).agent_id == 7  # type: ignore[union-attr]
    assert signer.check_media("/api/calls/13/recording", q["exp"], q["agent"], q["sig"]) is None
    assert signer.check_media(PATH, q["exp"], "8", q["sig"]) is None
    assert signer.check_media(PATH, str(int(q["exp"]) + 1), q["agent"], q["sig"]) is None
    assert UrlSigner(b"o" * 32, clock).check_media(PATH, q["exp"], q["agent"], q["sig"]) is None
    clock.now += MEDIA_TTL + 1
    assert signer.check_media(PATH, q["exp"], q["agent"], q["sig"]) is None


@pytest.mark.parametrize(("exp", "agent"), [("", "1"), ("²", "1"), ("1", "-1"), ("9" * 30, "1")])
def test_malformed_media_queries_are_refused(exp: str, agent: str) -> None:
    assert UrlSigner(KEY).check_media(PATH, exp, agent, "x") is None


def test_a_ticket_is_good_once_and_briefly() -> None:
    clock = Clock()
    signer = UrlSigner(KEY, clock)
    ticket = signer.ticket("h" * 64)
    assert signer.redeem(ticket) == "h" * 64
    assert signer.redeem(ticket) is None  # once
    late = signer.ticket("h" * 64)
    clock.now += TICKET_TTL + 1
    assert signer.redeem(late) is None
    forged = signer.ticket("h" * 64).replace("h" * 64, "g" * 64)
    assert signer.redeem(forged) is None
    assert signer.redeem("a.b.c") is None and signer.redeem("x" * 400) is None


def test_the_key_file_is_made_once_and_private(tmp_path: Path) -> None:
    settings = parse_settings({"general": {"data_dir": str(tmp_path / "data")}}, env={})
    key = signing_key(settings)
    assert len(key) == 32 and signing_key(settings) == key
    assert (tmp_path / "data" / "signing.key").stat().st_mode & 0o777 == 0o600
    configured = parse_settings({"http": {"signing_key": "s" * 20}}, env={})
    assert signing_key(configured) == b"s" * 20
