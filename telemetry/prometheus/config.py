"""Prometheus and Alertmanager for both stacks.

:func:`native_config` renders a ``prometheus.yml``: one job per service named
after it, scraped directly so exemplars arrive untouched, a self-scrape job,
and Alertmanager as alert target and scrape target. ``redline up`` calls it
with its ports; ``telemetry/prometheus/docker.py`` with the compose hostnames,
to write ``prometheus.docker.yml`` beside this file.
:func:`command_line` and :func:`alertmanager_command_line` give the argv of the
Debian binaries (Prometheus 2.42, Alertmanager 0.25), which also works for the
upstream releases.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import yaml

PROMETHEUS_BINARY = "prometheus"
# Debian's name; upstream tarballs call it ``alertmanager``.
ALERTMANAGER_BINARY = "prometheus-alertmanager"
# Local dev data: enough for a day of poking around, small on disk.
RETENTION = "1d"
MAX_EXEMPLARS = 100_000
SELF_JOB = "prometheus"
ALERTMANAGER_JOB = "alertmanager"

StrPath = str | os.PathLike[str]

_HEADER = "# Rendered by telemetry/prometheus/config.py for `redline up`; edits are overwritten.\n"


def _host_port(value: str, *, what: str) -> str:
    """Check ``host:port`` (no scheme, no path) and return it."""
    host, sep, port = value.rpartition(":")
    if "://" in value or "/" in value or not sep or not host or not port.isdigit():
        raise ValueError(f"{what}: expected host:port, got {value!r}")
    return value


def _static_job(name: str, target: str | list[str], *, scheme: str = "http") -> dict[str, Any]:
    # The global scrape interval and timeout apply to every job.
    job: dict[str, Any] = {"job_name": name}
    if scheme != "http":
        job["scheme"] = scheme
    job["static_configs"] = [{"targets": [target] if isinstance(target, str) else target}]
    return job


def native_config(
    targets: Mapping[str, str | Sequence[str]],
    *,
    rule_files: Sequence[str],
    alertmanager_url: str | None,
    scrape_interval: str = "2s",
    evaluation_interval: str = "2s",
    self_address: str = "127.0.0.1:9090",
    extra_targets: Mapping[str, str] | None = None,
    header: str = _HEADER,
) -> str:
    """A prometheus.yml (YAML text) scraping ``targets`` ({service: "host:port"}).

    Every service becomes a job of its own name (dashboards and alerts select on
    ``job``); a service with replicas gives a list of targets, one per
    instance. ``rule_files`` are paths or globs, as Prometheus resolves them
    (relative ones against the config file's directory). ``alertmanager_url``
    (``http://127.0.0.1:9093``) adds the alerting target and an ``alertmanager``
    job; ``self_address`` is where this Prometheus listens, for its self-scrape.
    ``extra_targets`` adds more jobs ({job: "host:port"}), e.g. a local
    otel-collector's own metrics. ``header`` is the comment the text opens with.
    """
    reserved = {SELF_JOB, ALERTMANAGER_JOB}
    jobs: dict[str, str | list[str]] = {}
    mappings: tuple[tuple[str, Mapping[str, str | Sequence[str]]], ...] = (
        ("service", targets),
        ("extra target", extra_targets or {}),
    )
    for kind, mapping in mappings:
        for name, target in mapping.items():
            if name in reserved or name in jobs:
                raise ValueError(f"{kind} {name!r}: the job name is already taken")
            if isinstance(target, str):
                jobs[name] = _host_port(target, what=f"{kind} {name!r}")
            else:
                jobs[name] = [_host_port(t, what=f"{kind} {name!r}") for t in target]

    scrape_configs = [_static_job(name, target) for name, target in jobs.items()]
    scrape_configs.append(_static_job(SELF_JOB, _host_port(self_address, what="self_address")))
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        # Exemplars also need --enable-feature=exemplar-storage (see command_line).
        "storage": {"exemplars": {"max_exemplars": MAX_EXEMPLARS}},
        "rule_files": list(rule_files),
    }
    if alertmanager_url is not None:
        url = urlsplit(alertmanager_url)
        if url.scheme not in ("http", "https") or not url.hostname or url.port is None:
            raise ValueError(
                f"alertmanager_url: expected http(s)://host:port, got {alertmanager_url!r}"
            )
        manager: dict[str, Any] = {"api_version": "v2"}
        if url.scheme != "http":
            manager["scheme"] = url.scheme
        if url.path.strip("/"):
            manager["path_prefix"] = url.path
        manager["static_configs"] = [{"targets": [url.netloc]}]
        config["alerting"] = {"alertmanagers": [manager]}
        am_job = _static_job(ALERTMANAGER_JOB, url.netloc, scheme=url.scheme)
        if url.path.strip("/"):
            am_job["metrics_path"] = url.path.rstrip("/") + "/metrics"
        scrape_configs.append(am_job)
    config["scrape_configs"] = scrape_configs
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def command_line(
    config_path: StrPath,
    data_dir: StrPath,
    listen: str,
    *,
    binary: str = PROMETHEUS_BINARY,
    retention: str = RETENTION,
) -> list[str]:
    """The argv that starts Prometheus on ``listen`` (``127.0.0.1:9090``)."""
    return [
        binary,
        f"--config.file={os.fspath(config_path)}",
        f"--storage.tsdb.path={os.fspath(data_dir)}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address={listen}",
        # POST /-/reload and /-/quit: reload after re-rendering, stop gracefully.
        "--web.enable-lifecycle",
        # Keep exemplars and negotiate OpenMetrics with the targets.
        "--enable-feature=exemplar-storage",
    ]


def alertmanager_command_line(
    config_path: StrPath,
    data_dir: StrPath,
    listen: str,
    cluster_listen: str = "",
    *,
    binary: str = ALERTMANAGER_BINARY,
) -> list[str]:
    """The argv that starts Alertmanager on ``listen``; clustering off by default.

    An empty ``cluster_listen`` disables the gossip listener (port 9094 by
    default), so a single local Alertmanager neither takes that port nor waits
    for peers.
    """
    return [
        binary,
        f"--config.file={os.fspath(config_path)}",
        f"--storage.path={os.fspath(data_dir)}",
        f"--web.listen-address={listen}",
        f"--cluster.listen-address={cluster_listen}",
    ]
