"""Grafana's provisioning for the native stack, rendered from the files docker compose mounts.

The files in ``provisioning/`` are the one description of Grafana's data
sources and dashboard provider. Where the two stacks differ (a URL, the scrape
interval, where the dashboards are) they hold ``${NAME}``, which Grafana
expands from its environment: compose sets the names in the ``grafana``
service's ``environment``; :func:`render` fills them in for ``redline up``,
which also runs without Loki — a data source whose URL it is not given is left
out, with the links other data sources make to it.

Grafana's own macros are escaped as ``$${...}`` in those files and stay so
here: Grafana still expands the rendered file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PROVISIONING = Path(__file__).resolve().parent / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = PROVISIONING / "dashboards" / "dashboards.yml"

# ${NAME}, not $${NAME} (Grafana's escape of a literal "$").
_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)\}")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace each ``${NAME}`` that ``values`` has; leave the rest for Grafana."""
    return _VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _unresolved(value: Any) -> bool:
    return isinstance(value, str) and _VARIABLE.search(value) is not None


def render(path: Path, values: Mapping[str, str]) -> str:
    """The provisioning file at ``path`` with ``values`` filled in, as YAML.

    A data source whose ``url`` names a variable ``values`` lacks is dropped,
    and so is every ``jsonData`` link (``{"datasourceUid": ...}``) to it.
    """
    config: dict[str, Any] = yaml.safe_load(substitute(path.read_text(encoding="utf-8"), values))
    sources = config.get("datasources")
    if sources:
        dropped = {ds["uid"] for ds in sources if _unresolved(ds.get("url"))}
        kept = [ds for ds in sources if ds["uid"] not in dropped]
        for ds in kept:
            links = ds.get("jsonData", {})
            for key in [k for k, v in links.items() if isinstance(v, dict)]:
                if links[key].get("datasourceUid") in dropped:
                    del links[key]
        config["datasources"] = kept
    return yaml.safe_dump(config, sort_keys=False)
