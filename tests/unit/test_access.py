"""The client address behind trusted reverse proxies."""

from __future__ import annotations

import ipaddress

import pytest

from crmcomms.web.access import client_address

TRUSTED = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("192.0.2.7", "", "192.0.2.7"),  # no proxy
        ("192.0.2.7", "198.51.100.1", "192.0.2.7"),  # an untrusted peer cannot claim an address
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),  # nginx on this host
        ("127.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the client's own claim ignored
        ("127.0.0.1", "198.51.100.1, 10.1.2.3", "198.51.100.1"),  # two proxies of ours
        ("127.0.0.1", "", "127.0.0.1"),  # a trusted peer without the header
        ("127.0.0.1", "garbage", "127.0.0.1"),
        ("127.0.0.1", "10.1.2.3", "10.1.2.3"),  # only trusted hops: the first one
        ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
        (None, "198.51.100.1", None),
    ],
)
def test_client_address(peer: str | None, forwarded: str, client: str | None) -> None:
    assert client_address(peer, forwarded, TRUSTED) == client


def test_nothing_trusted_by_default() -> None:
    assert client_address("127.0.0.1", "198.51.100.1", ()) == "127.0.0.1"
