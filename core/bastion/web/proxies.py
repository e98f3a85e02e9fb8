"""Believe X-Forwarded-* headers only from the reverse proxies an operator named.

Applied in the application rather than in waitress so that it works the same under any
WSGI server and accepts several proxy addresses or networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

# Headers only a proxy may set; the request id is one too (it ties our log lines to the
# proxy's), so a client cannot plant ids of its choosing.
PROXY_HEADER_KEYS = (
    "HTTP_X_REQUEST_ID",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
    "HTTP_FORWARDED",
)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> list[Network]:
    """'127.0.0.1, 10.0.0.0/8' -> networks; raises ValueError naming a bad entry."""
    networks = []
    for part in (p.strip() for p in spec.split(",")):
        if part:
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or network") from None
    return networks


class TrustedProxies:
    """ProxyFix for requests from trusted peers; forwarded headers dropped from all others."""

    def __init__(self, app: Any, count: int, networks: Iterable[Network]) -> None:
        self.app = app
        self.fixed = ProxyFix(app, x_for=count, x_proto=count, x_host=count, x_port=count)
        self.networks = tuple(networks)

    def _trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self._trusted(environ.get("REMOTE_ADDR", "")):
            return self.fixed(environ, start_response)
        for key in PROXY_HEADER_KEYS:
            environ.pop(key, None)
        return self.app(environ, start_response)
