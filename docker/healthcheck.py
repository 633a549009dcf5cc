"""Container health check: exit 0 when a URL answers 2xx, 1 otherwise.

The image's HEALTHCHECK runs it with no argument, which probes the service's
readiness endpoint on its own port: ``http://127.0.0.1:$REDLINE_PORT/health/ready``
(503 until the database is connected and start-up finished). Another URL can be
given as the only argument, e.g. Locust's web UI. Standard library only: slim
images have no curl or wget.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

READY_PATH = "/health/ready"
TIMEOUT_SECONDS = 2.5


def default_url(env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    return f"http://127.0.0.1:{env.get('REDLINE_PORT', '8000')}{READY_PATH}"


def probe(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as exc:  # 503 while not ready
        print(f"unhealthy: {url} answered {exc.code}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # refused, timed out, bad URL
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if 200 <= status < 300 else 1


def main(argv: list[str]) -> int:
    return probe(argv[1] if len(argv) > 1 else default_url())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
