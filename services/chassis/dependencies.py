"""Each service's downstream dependencies, configured from the environment.

Which services a service calls comes from services/topology.py; where they
are (``REDLINE_<DEP>_URL``: one base URL, or a comma-separated list of the
instances, each an endpoint of the dependency's balancer) and how the resilient client treats them
(``REDLINE_<DEP>_TIMEOUT_SECONDS``, ``..._MAX_CONCURRENT``, ...) from the
environment, on top of the code's defaults and the service's own overrides.
A bad value is a one-line configuration error naming the variable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from services.chassis.http_client import DependencyConfig, split_urls
from services.topology import SERVICES
from telemetry import ConfigError

# Suffix -> (where in DependencyConfig, parser, valid range).
_TUNABLES: dict[str, tuple[str, Callable[[str], Any], float, float]] = {
    "TIMEOUT_SECONDS": ("timeout", float, 0.001, 600),
    "MAX_CONCURRENT": ("max_concurrent", int, 1, 100_000),
    "MAX_WAIT_SECONDS": ("max_wait", float, 0, 60),
    "BREAKER_WAIT_SECONDS": ("breaker.wait_duration_in_open", float, 0, 3600),
    "BREAKER_MINIMUM_CALLS": ("breaker.minimum_calls", int, 1, 10_000),
    "BREAKER_WINDOW": ("breaker.sliding_window_size", int, 1, 10_000),
    "BREAKER_SLOW_CALL_SECONDS": ("breaker.slow_call_duration", float, 0.001, 600),
    "RETRY_MAX_ATTEMPTS": ("retry.max_attempts", int, 1, 10),
    "OUTLIER_CONSECUTIVE_FAILURES": ("outlier.consecutive_failures", int, 1, 1000),
    "OUTLIER_EJECTION_SECONDS": ("outlier.base_ejection", float, 0.1, 60),
    "DNS_REFRESH_SECONDS": ("dns_refresh_seconds", float, 0, 3600),
}


def _apply(config: DependencyConfig, path: str, value: Any) -> DependencyConfig:
    field, _, sub = path.partition(".")
    if not sub:
        return dataclasses.replace(config, **{field: value})
    inner = dataclasses.replace(getattr(config, field), **{sub: value})
    return dataclasses.replace(config, **{field: inner})


def dependency_configs(
    name: str, env: Mapping[str, str], overrides: Mapping[str, DependencyConfig] | None = None
) -> dict[str, DependencyConfig]:
    """One config per service ``name`` calls."""
    configs: dict[str, DependencyConfig] = {}
    for dep in SERVICES[name].calls if name in SERVICES else ():
        info = SERVICES[dep]
        url = env.get(info.url_variable) or f"http://127.0.0.1:{info.port}"
        if not split_urls(url):
            raise ConfigError(f"{info.url_variable}={url!r}: expected http(s)://host:port[,...]")
        for one in split_urls(url):
            try:
                parsed = httpx.URL(one)
            except (httpx.InvalidURL, TypeError) as exc:
                raise ConfigError(
                    f"{info.url_variable}={url!r}: {one!r} is not a URL ({exc})"
                ) from None
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise ConfigError(
                    f"{info.url_variable}={url!r}: expected http(s)://host:port[,...]"
                )
        base = (overrides or {}).get(dep)
        config = (
            dataclasses.replace(base, base_url=url)
            if base is not None
            else DependencyConfig(name=dep, base_url=url)
        )
        for suffix, (path, parse, low, high) in _TUNABLES.items():
            variable = f"REDLINE_{dep.upper()}_{suffix}"
            raw = env.get(variable)
            if raw is None:
                continue
            try:
                value = parse(raw)
            except ValueError:
                raise ConfigError(f"{variable}={raw!r}: not a {parse.__name__}") from None
            if not low <= value <= high:
                raise ConfigError(f"{variable}={raw!r}: must be within [{low:g}, {high:g}]")
            try:
                config = _apply(config, path, value)
            except ValueError as exc:  # a combination the breaker refuses
                raise ConfigError(f"{variable}={raw!r}: {exc}") from None
        configs[dep] = config
    return configs
