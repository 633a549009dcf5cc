"""``prometheus.docker.yml``, rendered by :func:`~telemetry.prometheus.config.native_config`.

One renderer for both stacks: ``redline up`` calls it with the ports it
chose; this module calls it with the compose hostnames and writes the file
docker compose mounts. ``python -m telemetry.prometheus.docker`` rewrites it
after a change; ``tests/stack_config/test_prometheus.py`` fails while the
committed file differs from what this renders. A leaf module: the library
never imports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from services.topology import SERVICES
from telemetry.prometheus.config import native_config

DOCKER_CONFIG = Path(__file__).resolve().parent / "prometheus.docker.yml"

# Short intervals: data within seconds.
SCRAPE_INTERVAL = "5s"
# compose mounts the repository's alerts/ directory at /etc/redline/alerts. The
# normal profile, as alerts/paths.py defines it: the hand-written rules and the
# generated SLO rules (not generated/compressed/, which the live tests load).
RULE_FILES = ["/etc/redline/alerts/rules/*.yml", "/etc/redline/alerts/generated/normal/*.yml"]
# What compose runs besides the services, Prometheus and Alertmanager.
EXTRA_TARGETS = {
    # Locust's client-side numbers while the `load` profile runs (down
    # otherwise; TargetDown ignores this job).
    "locust": "locust:9646",
    # The collector's own metrics (accepted/refused/dropped spans and log
    # records), and the span metrics of its span_metrics connector (Jaeger's
    # Monitor tab).
    "otel-collector": "otel-collector:8888",
    # NATS's own numbers, through redline/nats_exporter.py.
    "nats": "nats-exporter:7777",
    "spanmetrics": "otel-collector:8889",
    "jaeger": "jaeger:8888",
    "loki": "loki:3100",
    "grafana": "grafana:3000",
}

HEADER = """\
# Prometheus for docker compose. Rendered by telemetry/prometheus/docker.py with
# the same code that renders `redline up`'s (telemetry/prometheus/config.py):
# edit those and run `python -m telemetry.prometheus.docker`, not this file.
#
# The services are scraped directly, job = service name, so their OpenMetrics
# exemplars (the trace_id of a sampled request) reach Prometheus untouched; the
# compose file starts Prometheus with --enable-feature=exemplar-storage, which
# also makes it ask for OpenMetrics.
"""


def render() -> str:
    return native_config(
        {name: f"{name}:{info.port}" for name, info in SERVICES.items()},
        rule_files=RULE_FILES,
        alertmanager_url="http://alertmanager:9093",
        scrape_interval=SCRAPE_INTERVAL,
        evaluation_interval=SCRAPE_INTERVAL,
        self_address="localhost:9090",
        extra_targets=EXTRA_TARGETS,
        header=HEADER,
    )


def main() -> int:
    DOCKER_CONFIG.write_text(render())
    print(f"wrote {DOCKER_CONFIG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
