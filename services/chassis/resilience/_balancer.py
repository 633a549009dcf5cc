"""Client-side load balancing over a dependency's endpoints, with outlier ejection.

A dependency is a set of endpoints (``http://host:port`` base URLs): a static
list from configuration, or what a DNS name resolves to, refreshed (see
``services/chassis/discovery.py``). One endpoint is a set of one, and then
this class changes nothing: it always picks it and never ejects it.

**Policy: power of two choices on in-flight requests** (Mitzenmacher; Finagle's
and Envoy's ``LEAST_REQUEST`` default). Two distinct endpoints are drawn at
random among the available ones and the one with fewer requests in flight
*from this process* wins, ties to the first draw. Chosen over round robin
because the replicas are not equal here: a replica that is in a GC pause, on
a busier core or still warming its pools holds its requests longer, and P2C
sends it less at once, with no shared state and O(1) work; round robin keeps
sending it its exact share. Chosen over "least of all" because that herds
every caller onto the same least-loaded endpoint between updates.

**Outlier detection, like Envoy's ``consecutive_5xx``.** An endpoint that
fails ``consecutive_failures`` times in a row (a connect failure, a lost or
timed-out answer, a 5xx that is not the dependency's final answer) is
*ejected*: not picked for ``base_ejection * k`` seconds, where ``k`` is how
many times it has been ejected recently (capped at ``max_ejection``), then it
returns on its own: the next pick may choose it, and one more failure streak
ejects it for longer. A call whose every live endpoint failed still tries an
ejected one before giving up (Envoy's panic mode, per call), and an ejected
endpoint that answers such a call is back at once. ``k`` decays: an endpoint that stays in for
``max_ejection`` seconds starts over at 1. At most ``max_ejected_percent`` of
the endpoints are out at once (at least one of two may go; the only one of
one never does: a dependency's only endpoint is the breaker's business), so
a fault that hits every replica cannot eject the whole set and leave the
dependency empty; the circuit breaker is what judges that case.

**Why ejection per endpoint and the breaker per dependency.** The breaker
(``_breaker``) judges *calls* after the retrier, which retries on another
endpoint; ejection judges *attempts* on one endpoint. One bad replica of two
then costs a few attempts (retried elsewhere when idempotent) until it is
ejected, and the dependency's breaker sees the calls succeed; it opens only
when the calls fail whichever endpoint they go to, which is what "the
dependency is down" means. A full breaker per endpoint (rate windows,
half-open trials) would duplicate ejection with more state and more knobs:
a consecutive-failure count reacts to a dead replica within a handful of
requests, where a rate window needs ``minimum_calls``.

The balancer is a pure state machine: an injectable clock and random source,
hooks for ejections and returns, plain counters read at scrape time.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

from services.chassis.resilience._clock import Clock, monotonic
from services.chassis.resilience._hooks import ResilienceHooks, notify


@dataclass(frozen=True, slots=True)
class OutlierPolicy:
    """When to eject an endpoint and for how long. Seconds."""

    consecutive_failures: int = 5
    base_ejection: float = 5.0
    max_ejection: float = 60.0
    max_ejected_percent: float = 50.0

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1:
            raise ValueError("consecutive_failures must be at least 1")
        if not 0.0 < self.base_ejection <= self.max_ejection:
            raise ValueError("need 0 < base_ejection <= max_ejection")
        if not 0.0 <= self.max_ejected_percent <= 100.0:
            raise ValueError("max_ejected_percent must be within [0, 100]")


class Endpoint:
    """One instance of a dependency: its base URL, what is in flight, whether it is out."""

    __slots__ = (
        "address",
        "base_url",
        "consecutive_failures",
        "ejected_until",
        "ejections_total",
        "failures_total",
        "host",
        "in_flight",
        "last_return",
        "port",
        "recent_ejections",
        "successes_total",
    )

    def __init__(self, base_url: str) -> None:
        url = httpx.URL(base_url)
        self.base_url = base_url.rstrip("/")
        self.host: str = url.host
        self.port: int = url.port or (443 if url.scheme == "https" else 80)
        # host:port, the ``endpoint`` label (an IPv6 host in brackets).
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.address = f"{host}:{self.port}"
        self.in_flight = 0
        self.consecutive_failures = 0
        self.ejected_until: float | None = None
        self.recent_ejections = 0
        self.last_return = 0.0
        self.successes_total = 0
        self.failures_total = 0
        self.ejections_total = 0

    def __repr__(self) -> str:
        return f"<Endpoint {self.address} in_flight={self.in_flight} ejected={self.ejected_until}>"


@dataclass(frozen=True, slots=True)
class EndpointSnapshot:
    address: str
    in_flight: int
    ejected: bool
    successes_total: int
    failures_total: int
    ejections_total: int


@dataclass(frozen=True, slots=True)
class BalancerSnapshot:
    name: str
    endpoints: tuple[EndpointSnapshot, ...]


class Balancer:
    """Picks an endpoint per attempt; told how each attempt ended.

    ``pick(exclude)`` avoids the endpoints a call has already tried when
    another is available; ``begin``/``end`` bracket an attempt (in-flight
    counts for P2C, failure streaks for ejection).
    """

    __slots__ = ("__weakref__", "_clock", "_endpoints", "_hooks", "_name", "_policy", "_random")

    def __init__(
        self,
        name: str,
        urls: Iterable[str],
        policy: OutlierPolicy | None = None,
        *,
        clock: Clock = monotonic,
        random: Callable[[], float] = _random.random,
        hooks: ResilienceHooks | None = None,
    ) -> None:
        self._name = name
        self._policy = policy if policy is not None else OutlierPolicy()
        self._clock = clock
        self._random = random
        self._hooks = hooks
        self._endpoints: tuple[Endpoint, ...] = ()
        self.update(urls)

    @property
    def name(self) -> str:
        return self._name

    @property
    def policy(self) -> OutlierPolicy:
        return self._policy

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    def update(self, urls: Iterable[str]) -> None:
        """Replace the set (a refreshed DNS answer); endpoints that stay keep their state."""
        known = {e.base_url: e for e in self._endpoints}
        fresh: list[Endpoint] = []
        for url in urls:
            key = url.rstrip("/")
            if key in (e.base_url for e in fresh):
                continue
            fresh.append(known.get(key) or Endpoint(url))
        if not fresh:
            raise ValueError(f"{self._name}: a dependency needs at least one endpoint")
        self._endpoints = tuple(fresh)

    def pick(self, exclude: Sequence[Endpoint] = ()) -> Endpoint:
        """P2C among the endpoints neither ejected nor in ``exclude``.

        When none is left, an *ejected* endpoint the call has not tried comes
        next (Envoy's panic mode, per call): ejection steers traffic away from
        an endpoint, it must never leave a call with nowhere to go while one
        might answer, e.g. the replica restarted a moment ago while its
        sibling is now the one restarting. Last, any endpoint.
        """
        endpoints = self._endpoints
        if len(endpoints) == 1:
            return endpoints[0]
        now = self._clock()
        live = [e for e in endpoints if not self._ejected(e, now)]
        candidates = [e for e in live if e not in exclude]
        if not candidates:
            candidates = [e for e in endpoints if e not in exclude] or live or list(endpoints)
        if len(candidates) == 1:
            return candidates[0]
        n = len(candidates)
        i = int(self._random() * n) % n
        j = int(self._random() * (n - 1)) % (n - 1)
        if j >= i:
            j += 1
        first, second = candidates[i], candidates[j]
        return second if second.in_flight < first.in_flight else first

    def begin(self, endpoint: Endpoint) -> None:
        endpoint.in_flight += 1

    def end(self, endpoint: Endpoint, *, failed: bool) -> None:
        endpoint.in_flight -= 1
        if not failed:
            endpoint.successes_total += 1
            endpoint.consecutive_failures = 0
            if endpoint.ejected_until is not None:  # answered a call sent in panic: it is back
                self._return(endpoint, self._clock())
            return
        endpoint.failures_total += 1
        endpoint.consecutive_failures += 1
        policy = self._policy
        if endpoint.consecutive_failures < policy.consecutive_failures:
            return
        now = self._clock()
        if self._ejected(endpoint, now) or not self._may_eject(now):
            return
        if now - endpoint.last_return >= policy.max_ejection:
            endpoint.recent_ejections = 0  # in long enough to start over
        endpoint.recent_ejections += 1
        seconds = min(policy.max_ejection, policy.base_ejection * endpoint.recent_ejections)
        endpoint.ejected_until = now + seconds
        endpoint.ejections_total += 1
        endpoint.consecutive_failures = 0
        if self._hooks is not None:
            notify(self._hooks.on_endpoint_ejection, self._name, endpoint.address, seconds)

    def _ejected(self, endpoint: Endpoint, now: float) -> bool:
        until = endpoint.ejected_until
        if until is None:
            return False
        if now < until:
            return True
        self._return(endpoint, now)
        return False

    def _return(self, endpoint: Endpoint, now: float) -> None:
        endpoint.ejected_until = None
        endpoint.last_return = now
        if self._hooks is not None:
            notify(self._hooks.on_endpoint_return, self._name, endpoint.address)

    def _may_eject(self, now: float) -> bool:
        total = len(self._endpoints)
        out = sum(1 for e in self._endpoints if self._ejected(e, now))
        allowed = int(total * self._policy.max_ejected_percent / 100.0)
        if total >= 2 and self._policy.max_ejected_percent > 0:
            allowed = max(allowed, 1)
        return out < min(allowed, total - 1)

    def snapshot(self) -> BalancerSnapshot:
        now = self._clock()
        return BalancerSnapshot(
            name=self._name,
            endpoints=tuple(
                EndpointSnapshot(
                    address=e.address,
                    in_flight=e.in_flight,
                    ejected=e.ejected_until is not None and now < e.ejected_until,
                    successes_total=e.successes_total,
                    failures_total=e.failures_total,
                    ejections_total=e.ejections_total,
                )
                for e in self._endpoints
            ),
        )

    def __repr__(self) -> str:
        return f"<Balancer {self._name} {[e.address for e in self._endpoints]}>"
