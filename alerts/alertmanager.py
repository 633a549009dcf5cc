"""The committed Alertmanager configuration, pointed at another webhook receiver.

Alertmanager reads no environment variables in its config, so a test that binds
a free port renders a copy: ``config_for("http://127.0.0.1:54321")`` keeps
every route and inhibition and moves each receiver's webhook to that base URL,
keeping the path (``/alerts/pager``, ``/alerts/tickets``, ``/alerts/chat``) so
the test can tell which receiver a notification went to.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

from alerts.paths import ALERTMANAGER_CONFIG

# What the committed file names: docker compose's alert-sink container.
# `redline up` and the tests render a copy pointing at their own sink.
DEFAULT_WEBHOOK_BASE = "http://alert-sink:9095"


def load() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    return config


def webhook_urls(config: dict[str, Any]) -> dict[str, list[str]]:
    """Receiver name → its webhook URLs."""
    return {
        r["name"]: [w["url"] for w in r.get("webhook_configs", [])] for r in config["receivers"]
    }


def config_for(
    webhook_base: str,
    *,
    group_wait: str | None = None,
    group_interval: str | None = None,
    repeat_interval: str | None = None,
) -> str:
    """The committed config as YAML, its webhooks moved to ``webhook_base``.

    The timing overrides apply to the root route and every child route, so a
    live test need not wait the production 30 s ``group_wait``.
    """
    base = urlsplit(webhook_base)
    if not base.scheme or not base.netloc:
        raise ValueError(f"webhook_base must be an absolute URL, got {webhook_base!r}")
    config = load()
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            path = urlsplit(hook["url"]).path
            hook["url"] = f"{base.scheme}://{base.netloc}{base.path.rstrip('/')}{path}"
    timings = {
        "group_wait": group_wait,
        "group_interval": group_interval,
        "repeat_interval": repeat_interval,
    }
    overrides = {k: v for k, v in timings.items() if v is not None}
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        for key, value in overrides.items():
            if route is config["route"] or key in route:
                route[key] = value
        routes.extend(route.get("routes", []))
    return yaml.safe_dump(config, sort_keys=False)
