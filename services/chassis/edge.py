"""The public edge: who the client is, and which of its headers the platform believes.

Behind the gateway every header is the platform's own: a deadline, a trace
context, baggage. At the gateway they come from the internet, so the gateway
(``create_app(..., edge=EdgePolicy(...))``):

* ignores ``x-deadline-remaining-ms``: the route's own budget is the deadline
  (else ``x-deadline-remaining-ms: 0`` buys an instant 504 that burns the
  availability SLO);
* continues a ``traceparent`` only from trusted callers
  (``REDLINE_TRACE_TRUSTED_CLIENTS``); anyone else's request starts a new trace
  under the gateway's sampler, linked to the caller's span, and its
  ``tracestate`` and ``baggage`` are dropped (telemetry/_middleware.py);
* takes the client's address from ``X-Forwarded-For`` only when the peer is a
  trusted proxy (``REDLINE_TRUSTED_PROXIES``), so rate limits key on the client
  behind a load balancer and not on the balancer; per-client limits count an
  IPv6 client by its /64 (``network_key``).

``X-Request-ID`` is bounded by every service (1-128 characters of
``[A-Za-z0-9._:-]``, else replaced; telemetry/_middleware.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_FORWARDED_FOR = b"x-forwarded-for"


def parse_networks(value: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, ::1"`` -> networks; a bare address is a /32 or /128. Raises ValueError."""
    networks = []
    for item in value.replace(" ", ",").split(","):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(networks)


@lru_cache(maxsize=4096)
def network_key(address: str) -> str:
    """What a per-client limit counts by: an IPv4 address, or an IPv6 address's /64.

    One IPv6 subscriber usually holds a whole /64 and can pick any address in
    it, so a limit per IPv6 address would be a limit per request. Cached: the
    gateway asks for every request, and parsing an address costs ~10 µs.
    """
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed) if parsed is not None else address


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _within(address: Address | None, networks: Iterable[Network]) -> bool:
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == n.version and address in n for n in networks)


@dataclass(frozen=True)
class EdgePolicy:
    """What the gateway believes about a request's origin and headers."""

    # Peers whose X-Forwarded-For names the client (load balancers, reverse proxies).
    trusted_proxies: tuple[Network, ...] = ()
    # Clients whose traceparent/tracestate/baggage are continued, not replaced.
    trace_trusted_clients: tuple[Network, ...] = ()

    def client_address(self, scope: Any) -> str:
        """The client's IP address: the peer, or what trusted proxies say it is.

        ``X-Forwarded-For`` is read right to left, each proxy appending the
        address it saw: the first address that is not a trusted proxy is the
        client. A peer that is not a trusted proxy is the client, whatever the
        header says.
        """
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self.trusted_proxies or not _within(_address(peer), self.trusted_proxies):
            return peer
        hops: list[str] = []
        for name, value in scope["headers"]:
            if name == _FORWARDED_FOR:
                hops += value.decode("latin-1").split(",")
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break  # garbage: stop believing the chain here
            if not _within(address, self.trusted_proxies):
                return str(address)
            peer = str(address)
        return peer

    def trusts_context(self, scope: Any) -> bool:
        """Whether this request's trace context and baggage may be continued."""
        if not self.trace_trusted_clients:
            return False
        return _within(_address(self.client_address(scope)), self.trace_trusted_clients)
