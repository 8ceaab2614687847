"""How the gateway reaches one upstream: a proxy from the environment, and .netrc
credentials, read once when the upstream is configured.

aiohttp's ``trust_env`` reads both on every request, each in a worker thread (the
proxy variables and the .netrc file): two thread hops before every answer's first
byte, about a tenth of the server's CPU when relaying (``benchmarks/profile_server.py
relay``). The environment of a server does not change while it runs, so the route is
worked out once, with aiohttp's own helpers so the rules stay aiohttp's:
``HTTP_PROXY``/``HTTPS_PROXY`` (plain-HTTP proxies; credentials in the URL or in
.netrc), ``NO_PROXY``, and the .netrc entry of the upstream's host (``NETRC`` or
``~/.netrc``) when the upstream has no key and no ``Authorization`` header of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from yarl import URL

__all__ = ["UpstreamRoute"]


@dataclass(frozen=True, slots=True)
class UpstreamRoute:
    """The proxy (if any) between the gateway and one upstream, and the .netrc login.

    Credentials travel as headers: aiohttp deprecates its ``auth`` and ``proxy_auth``
    arguments. The proxy's own login goes on the ``CONNECT`` of an ``https`` upstream
    (``proxy_headers``) and on each request to a plain ``http`` one, which the proxy
    reads itself.
    """

    proxy: URL | None = None
    proxy_authorization: str | None = None
    tunnelled: bool = False  # https through the proxy: a CONNECT tunnel
    netrc_authorization: str | None = None

    @classmethod
    def from_environment(cls, base_url: str) -> UpstreamRoute:
        url = URL(base_url)
        proxy: URL | None = None
        proxy_authorization = None
        with contextlib.suppress(LookupError):  # NO_PROXY covers it, or none for its scheme
            proxy, proxy_auth = get_env_proxy_for_url(url)
            if proxy_auth is not None:
                proxy_authorization = proxy_auth.encode()
        netrc_authorization = None
        if url.host is not None:
            with contextlib.suppress(LookupError):  # no .netrc, or no entry for the host
                netrc_authorization = basicauth_from_netrc(netrc_from_env(), url.host).encode()
        return cls(proxy, proxy_authorization, url.scheme == "https", netrc_authorization)

    @property
    def proxy_headers(self) -> Mapping[str, str] | None:
        if self.proxy_authorization is None or not self.tunnelled:
            return None
        return {"proxy-authorization": self.proxy_authorization}

    def authorize(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with the .netrc login (unless they already say who is asking), and
        the proxy's login when the proxy reads the requests themselves."""
        added: dict[str, str] = {}
        if self.proxy_authorization is not None and not self.tunnelled:
            added["proxy-authorization"] = self.proxy_authorization
        if self.netrc_authorization is not None and not any(
            name.lower() == "authorization" for name in headers
        ):
            added["authorization"] = self.netrc_authorization
        return {**headers, **added} if added else headers
