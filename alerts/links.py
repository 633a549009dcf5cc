"""Where alerts point a responder: the runbook in this repository, the Grafana dashboard.

Absolute URLs, because they are read in a chat message or a pager app, far
from the repository. The hand-written rules files spell out the same URLs; a
static test holds both to a runbook file and a dashboard uid that exist.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

REPO_URL = "https://github.com/redline-platform/redline"
RUNBOOK_BASE = f"{REPO_URL}/blob/main/alerts/runbooks/"
# Where `redline up` and the Docker stack serve Grafana.
GRAFANA_URL = "http://localhost:3000"

_RUNBOOK = re.compile(re.escape(RUNBOOK_BASE) + r"(?P<file>[A-Za-z0-9_-]+\.md)$")
_DASHBOARD = re.compile(re.escape(GRAFANA_URL) + r"/d/(?P<uid>[a-z0-9-]+)(?:[/?].*)?$")


def runbook_url(alert_name: str) -> str:
    return f"{RUNBOOK_BASE}{alert_name}.md"


def dashboard_url(uid: str, **variables: str) -> str:
    query = urlencode({f"var-{k}": v for k, v in variables.items()})
    return f"{GRAFANA_URL}/d/{uid}" + (f"?{query}" if query else "")


def runbook_file(url: str) -> str | None:
    """The file name under ``alerts/runbooks/`` a runbook URL names, if it is one."""
    m = _RUNBOOK.match(url)
    return m["file"] if m else None


def dashboard_uid(url: str) -> str | None:
    """The dashboard uid a Grafana URL names, if it is one."""
    m = _DASHBOARD.match(url)
    return m["uid"] if m else None
