"""Reading the client's address: the peer, or ``X-Forwarded-For`` from a trusted proxy.

The rules without a server; ``test_client_limits.py`` shows them over HTTP.
"""

from __future__ import annotations

import pytest

from typewriter.api.client_address import Client, TrustedProxies, parse_address
from typewriter.config import load_settings
from typewriter.errors import ConfigError

PROXIES = TrustedProxies(["127.0.0.1", "::1", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # no proxy: the peer, whatever the header says
        ("203.0.113.7", ["198.51.100.1"], Client("203.0.113.7", direct=True)),
        ("127.0.0.1", [], Client("127.0.0.1", direct=True)),
        # a trusted proxy: the rightmost address that is not a trusted proxy
        ("127.0.0.1", ["198.51.100.1"], Client("198.51.100.1", direct=False)),
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1, 10.0.0.9"], Client("198.51.100.1", direct=False)),
        ("127.0.0.1", ["6.6.6.6", "198.51.100.1"], Client("198.51.100.1", direct=False)),
        # every hop trusted: the leftmost, a client inside the trusted networks
        ("10.0.0.1", ["10.0.0.2, 10.0.0.3"], Client("10.0.0.2", direct=False)),
        ("127.0.0.1", ["127.0.0.1"], Client("127.0.0.1", direct=False)),
        # garbage stops the walk: nothing left of it is believed
        ("127.0.0.1", ["198.51.100.1, bogus, 10.0.0.4"], Client("10.0.0.4", direct=False)),
        ("127.0.0.1", ["unknown"], Client("127.0.0.1", direct=True)),
        ("127.0.0.1", [""], Client("127.0.0.1", direct=True)),
        # ports and spellings
        ("127.0.0.1", ["198.51.100.1:5555"], Client("198.51.100.1", direct=False)),
        ("::1", ["[2001:db8::1]:443"], Client("2001:db8::1", direct=False)),
        ("::ffff:127.0.0.1", ["::ffff:198.51.100.2"], Client("198.51.100.2", direct=False)),
        (None, ["198.51.100.1"], Client("", direct=True)),
    ],
)
def test_the_client_is_the_rightmost_untrusted_address(
    peer: str | None, forwarded: list[str], client: Client
) -> None:
    assert PROXIES.resolve(peer, forwarded) == client


def test_only_a_direct_loopback_client_is_local() -> None:
    assert Client("127.0.0.5", direct=True).direct_loopback
    assert Client("::1", direct=True).direct_loopback
    assert Client("", direct=True).direct_loopback  # a Unix socket
    assert not Client("127.0.0.1", direct=False).direct_loopback  # forwarded by a proxy
    assert not Client("192.0.2.2", direct=True).direct_loopback


def test_parse_address_refuses_what_is_not_an_address() -> None:
    for text in ("", "example.com", "1.2.3", "1.2.3.4:x:y", "[::1", "[::1]x", "1.2.3.4/8"):
        assert parse_address(text) is None, text


def test_a_bad_trusted_proxy_stops_the_start_with_one_line() -> None:
    assert load_settings(trusted_proxies=["10.0.0.0/8", "fd00::/8", "192.0.2.1"])
    with pytest.raises(ConfigError) as bad:
        load_settings(trusted_proxies=["10.0.0.0/8", "nginx"])
    message = bad.value.message
    assert "trusted_proxies" in message and "'nginx'" in message and "\n" not in message
