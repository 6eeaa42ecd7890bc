"""Who is asking: the direct peer, or the client a trusted proxy says it forwarded for.

`X-Forwarded-For` is read only when the direct peer is one of `REFERRAL_BROKER_TRUSTED_PROXIES`; then the
header is walked from the right past every trusted proxy, and the first address that is not one is the
client. Anything to the left of it was written by the client itself and is not believed.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from litestar import Request

Network = IPv4Network | IPv6Network


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ip_network(n, strict=False) for n in trusted)


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip: IPv4Address | IPv6Address = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    networks = _networks(trusted)
    if not forwarded_for or not _is_trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


def client_of(request: Request[Any, Any, Any], trusted: tuple[str, ...]) -> str:
    peer = request.client.host if request.client else "unknown"
    return client_address(peer, request.headers.get("x-forwarded-for"), trusted)
