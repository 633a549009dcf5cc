"""Where the console reads from: Prometheus, Alertmanager and Jaeger, over their own HTTP APIs.

The URLs come from the running stack's state file (``<state>/stack.json``)
unless given; each client raises :class:`SourceError` with one line naming the
URL when its backend does not answer, so a command can say what is missing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from redline.stack import DEFAULT_PORTS
from redline.state import read_state


class SourceError(RuntimeError):
    """A backend did not answer, or answered an error: one line for the user."""


@dataclass(frozen=True)
class Endpoints:
    prometheus: str
    alertmanager: str
    jaeger: str
    state_dir: Path

    @classmethod
    def discover(
        cls,
        state_dir: Path,
        *,
        prometheus: str | None = None,
        alertmanager: str | None = None,
        jaeger: str | None = None,
    ) -> Endpoints:
        """Given URLs first, then the environment, then the stack's state file, then defaults."""
        state = read_state(state_dir) or {}
        host = state.get("host", "127.0.0.1")
        ports = {**DEFAULT_PORTS, **state.get("ports", {})}

        def pick(name: str, given: str | None) -> str:
            url = given or os.environ.get(f"REDLINE_{name.upper()}_URL")
            return (url or f"http://{host}:{ports[name]}").rstrip("/")

        return cls(
            prometheus=pick("prometheus", prometheus),
            alertmanager=pick("alertmanager", alertmanager),
            jaeger=pick("jaeger", jaeger),
            state_dir=state_dir,
        )


def _get(client: httpx.Client, url: str, what: str, **params: Any) -> Any:
    try:
        r = client.get(url, params=params or None)
    except httpx.HTTPError as exc:
        raise SourceError(f"{what} is not reachable at {url}: {exc.__class__.__name__}") from None
    if r.status_code >= 400:
        raise SourceError(f"{what} answered {r.status_code} at {url}: {r.text[:200]}")
    return r.json()


class Prometheus:
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; the result vector (``[{metric, value: [t, "v"]}]``)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = _get(self._client, f"{self.url}/api/v1/query", "Prometheus", **params)
        if body.get("status") != "success":
            raise SourceError(f"Prometheus rejected {expr!r}: {body.get('error')}")
        result = body["data"]["result"]
        if body["data"].get("resultType") == "scalar":
            return [{"metric": {}, "value": result}]
        out: list[dict[str, Any]] = result
        return out

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts the rules hold right now: firing and pending."""
        body = _get(self._client, f"{self.url}/api/v1/alerts", "Prometheus")
        out: list[dict[str, Any]] = body["data"]["alerts"]
        return out

    def exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        body = _get(
            self._client,
            f"{self.url}/api/v1/query_exemplars",
            "Prometheus",
            query=expr,
            start=f"{start:.3f}",
            end=f"{end:.3f}",
        )
        out: list[dict[str, Any]] = body.get("data") or []
        return out


class Alertmanager:
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert Alertmanager holds, active, silenced or inhibited (API v2)."""
        out: list[dict[str, Any]] = _get(self._client, f"{self.url}/api/v2/alerts", "Alertmanager")
        return out

    def silences(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = _get(
            self._client, f"{self.url}/api/v2/silences", "Alertmanager"
        )
        return out


class Jaeger:
    """Jaeger's query service, classic JSON API (``/api/traces``), as Jaeger v1 and v2 serve it."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def _unreachable(self, exc: Exception) -> SourceError:
        return SourceError(
            f"Jaeger is not reachable at {self.url} ({exc.__class__.__name__}); `redline up` "
            "runs it when Go can build it (see `redline status`), or pass --jaeger URL"
        )

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace in Jaeger's JSON, or None when Jaeger does not have it."""
        url = f"{self.url}/api/traces/{trace_id}"
        try:
            r = self._client.get(url)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            raise SourceError(f"Jaeger answered {r.status_code} at {url}: {r.text[:200]}")
        data = r.json().get("data") or []
        return data[0] if data else None

    def find(self, service: str, tags: dict[str, str], *, limit: int = 20) -> list[dict[str, Any]]:
        try:
            r = self._client.get(
                f"{self.url}/api/traces",
                params={
                    "service": service,
                    "tags": json.dumps(tags),
                    "limit": str(limit),
                    "lookback": "2d",
                },
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if r.status_code >= 400:
            return []
        out: list[dict[str, Any]] = r.json().get("data") or []
        return out
