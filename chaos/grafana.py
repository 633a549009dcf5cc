"""Grafana annotations: each step of an experiment marked on every dashboard's time axis.

Written when ``grafana_url`` is configured (``GRAFANA_TOKEN`` in the
environment, if Grafana needs one); a Grafana that does not answer costs the
experiment nothing but a note in the journal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx


class Annotator:
    def __init__(self, url: str | None, experiment: str, token: str | None = None) -> None:
        self.url = url.rstrip("/") if url else None
        self.experiment = experiment
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        self.written: list[dict[str, Any]] = []

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any], experiment: str) -> Annotator:
        url = configuration.get("grafana_url")
        return cls(str(url) if url else None, experiment, os.environ.get("GRAFANA_TOKEN"))

    def annotate(self, text: str, tags: list[str], start: float, end: float) -> None:
        """A region from ``start`` to ``end`` (seconds since the epoch), tagged ``chaos``."""
        if not self.url:
            return
        body = {
            "time": int(start * 1000),
            "timeEnd": int(end * 1000),
            "tags": ["chaos", self.experiment, *[t for t in tags if t]],
            "text": text,
        }
        entry: dict[str, Any] = {"text": text}
        try:
            r = httpx.post(
                f"{self.url}/api/annotations", json=body, headers=self.headers, timeout=3
            )
            entry["status"] = r.status_code
        except httpx.HTTPError as exc:
            entry["error"] = type(exc).__name__
        self.written.append(entry)
