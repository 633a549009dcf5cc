"""Endpoints from DNS, re-resolved periodically: the form a Kubernetes headless Service takes.

``REDLINE_<DEP>_URL=http://inventory-headless:8002`` with
``REDLINE_<DEP>_DNS_REFRESH_SECONDS=10``: every 10 s the host name is resolved
and the dependency's balancer gets one endpoint per address (same scheme,
port and path). Endpoints that stay keep their in-flight counts and ejection
state (``Balancer.update``). A failed or empty answer keeps the last good set:
a DNS blip must not empty a dependency. URLs whose host is already an IP
address are kept as they are.

Requests then go to ``http://<ip>:<port>``: the ``Host`` header carries the
address, which Redline's services do not look at (no virtual hosting between
services).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence

import httpx

from services.chassis.resilience import Balancer
from telemetry import get_logger

_log = get_logger("discovery")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# A host name and port -> the addresses it resolves to.
Lookup = Callable[[str, int], Awaitable[Iterable[str]]]


async def system_lookup(host: str, port: int) -> list[str]:
    """The system resolver's answer (getaddrinfo: /etc/hosts, DNS), as addresses."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve(urls: Sequence[str], lookup: Lookup = system_lookup) -> list[str]:
    """Each URL with a host name becomes one URL per address it resolves to, in sorted order."""
    out: list[str] = []
    for raw in urls:
        url = httpx.URL(raw)
        if _is_address(url.host):
            out.append(raw.rstrip("/"))
            continue
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = sorted(set(await lookup(url.host, port)))
        for address in addresses:
            host = f"[{address}]" if ":" in address else address
            out.append(str(url.copy_with(netloc=f"{host}:{port}".encode())).rstrip("/"))
    return out


class DnsDiscovery:
    """Keeps ``balancer``'s endpoints at what ``urls`` resolve to, every ``interval`` seconds."""

    def __init__(
        self,
        balancer: Balancer,
        urls: Sequence[str],
        interval: float,
        lookup: Lookup = system_lookup,
    ) -> None:
        self._balancer = balancer
        self._urls = tuple(urls)
        self._interval = interval
        self._lookup = lookup
        self._task: asyncio.Task[None] | None = None
        self.refreshed = asyncio.Event()

    def ensure_started(self) -> None:
        """Start the refresh loop on the running event loop (first call only)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def refresh(self) -> None:
        try:
            urls = await resolve(self._urls, self._lookup)
        except OSError as exc:
            _log.warning("endpoint discovery failed", balancer=self._balancer.name, error=str(exc))
            return
        if not urls:
            return
        before = [e.base_url for e in self._balancer.endpoints]
        self._balancer.update(urls)
        after = [e.base_url for e in self._balancer.endpoints]
        if after != before:
            _log.info("endpoints changed", balancer=self._balancer.name, endpoints=after)
        self.refreshed.set()

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
