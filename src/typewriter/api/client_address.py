"""Who is calling, by address: the socket's peer, or the client a trusted proxy names.

With auth off every caller is the one local user, so the per-user limits count
clients by address instead (:mod:`.limit_key`), and the address must be one a
client cannot choose. The peer of the socket is such an address. A proxy in
front (an nginx) is the peer of every request, so it says who its client was
in ``X-Forwarded-For``; that header is believed only from a peer listed in
``trusted_proxies``, and then read the standard way: from the right, skipping
the trusted proxies, the first address that is not one is the client. Each
proxy appends the address it saw, so the entries a client wrote itself are
further left and never reached while a trusted proxy stands to their right.

uvicorn's own proxy-header handling is off (``server.build_server``): it would
rewrite the peer before this middleware sees it, and then a client connecting
from loopback could not be told from one an nginx on the same host forwards.
This middleware does that job instead, from ``trusted_proxies``: it rewrites
``scope["client"]`` (and ``scheme`` from ``X-Forwarded-Proto``) for the app and
the access log, and keeps the whole answer, whether the address came from the
socket, in the request's state (:func:`client_of`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Client", "ClientAddress", "TrustedProxies", "client_of", "parse_address"]

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_STATE_KEY = "client"
_SCHEMES = {"http", "https"}


@dataclass(frozen=True, slots=True)
class Client:
    """The caller's address (``""`` when the socket has none, a Unix socket), and whether
    it is the socket's own peer rather than an address a proxy forwarded."""

    address: str
    direct: bool

    @property
    def direct_loopback(self) -> bool:
        """Connected straight from this machine: loopback, or a socket with no address."""
        if not self.direct:
            return False
        if not self.address:
            return True
        parsed = parse_address(self.address)
        return parsed is not None and parsed.is_loopback


def parse_address(text: str) -> Address | None:
    """An IP address as a peer or an ``X-Forwarded-For`` entry gives it, or None.

    Takes ``1.2.3.4``, ``1.2.3.4:port``, ``2001:db8::1`` and ``[2001:db8::1]:port``;
    an IPv4 address written as IPv6 (``::ffff:1.2.3.4``) is the IPv4 address, so one
    client has one spelling.
    """
    text = text.strip()
    if text.startswith("["):
        text, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return None
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The peers whose ``X-Forwarded-For`` is believed: addresses or networks (CIDR).

    The entries were checked when the settings were loaded; one that is not an
    address or a network raises ``ValueError`` here as well.
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry.strip(), strict=False) for entry in entries
        )

    def __contains__(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def resolve(self, peer: str | None, forwarded: list[str]) -> Client:
        """The client of a request from ``peer`` that carried these ``X-Forwarded-For``
        values: the rightmost forwarded address that is not a trusted proxy."""
        if peer is None:
            return Client("", direct=True)
        hop = parse_address(peer)
        if hop is None or hop not in self or not forwarded:
            return Client(str(hop) if hop is not None else peer, direct=True)
        client: Address | None = None
        for entry in reversed(",".join(forwarded).split(",")):
            address = parse_address(entry)
            if address is None:
                break  # what a proxy wrote is well formed: the rest is the client's own
            client = address
            if address not in self:
                break
        if client is None:
            return Client(str(hop), direct=True)
        return Client(str(client), direct=False)


def client_of(scope: Scope) -> Client:
    """The client :class:`ClientAddress` resolved for this request; without it (an app
    that does not install it), the socket's peer as it is."""
    state = scope.get("state") or {}
    client = state.get(_STATE_KEY)
    if isinstance(client, Client):
        return client
    peer = scope.get("client")
    if not peer:
        return Client("", direct=True)
    address = parse_address(str(peer[0]))
    return Client(str(address) if address is not None else str(peer[0]), direct=True)


class ClientAddress:
    """Pure ASGI middleware: the request's client resolved once, before anything else runs."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            self._resolve(scope)
        await self.app(scope, receive, send)

    def _resolve(self, scope: Scope) -> None:
        peer = scope.get("client")
        forwarded: list[str] = []
        proto: str | None = None
        hop = parse_address(str(peer[0])) if peer else None
        trusted = hop is not None and hop in self.trusted
        if trusted:
            for name, value in scope.get("headers", ()):
                if name == b"x-forwarded-for":
                    forwarded.append(value.decode("latin-1"))
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").strip().lower()
        client = self.trusted.resolve(str(peer[0]) if peer else None, forwarded)
        scope.setdefault("state", {})[_STATE_KEY] = client
        if not client.direct:
            scope["client"] = (client.address, 0)
        if proto in _SCHEMES:
            scope["scheme"] = proto if scope["type"] == "http" else proto.replace("http", "ws")
