"""Whom the per-user limits count a request against.

``requests_per_minute``, ``max_streams_per_user`` and ``max_listeners_per_user``
are per user when auth is on. With auth off everybody is the one local user,
and counting them so would make each limit server-wide: a page reloaded a few
times beside a script would reach it, and one client could lock out everyone.
So with auth off they count the client's address (:mod:`.client_address`), and
a client connecting straight from this machine's loopback is not limited at all
unless ``limit_loopback`` says so: it is the operator's own page or script. A
client an nginx on this machine forwards is counted by the address the proxy
names, loopback or not.

An IPv6 client is counted by its /64: one host usually holds a whole /64 and can
pick any address in it, so counting single addresses would not bound it.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

from .auth import LOCAL_USER
from .client_address import client_of, parse_address

__all__ = ["limit_key"]

_IPV6_PREFIX = 64


def limit_key(request: Request) -> str | None:
    """The key the request's limits count under, or None when they do not apply.

    Called after the auth dependency, which signs in ``LOCAL_USER`` exactly when
    auth is off.
    """
    user: str = request.state.user
    if user != LOCAL_USER:
        return f"user:{user}"
    client = client_of(request.scope)
    if client.direct_loopback and not request.app.state.gateway.settings.limit_loopback:
        return None
    address = parse_address(client.address)
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((address, _IPV6_PREFIX), strict=False)
        return f"addr:{network}"
    return f"addr:{address if address is not None else client.address}"
