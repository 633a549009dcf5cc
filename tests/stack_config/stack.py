"""Reading the docker compose stack's files, and the checks the tests run on them.

The checks are plain functions returning a list of problems (empty: fine), so the
tests can run them on the real files and on small broken examples alike.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from redline import binaries

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
COLLECTOR_CONFIG = REPO / "telemetry/collector/otelcol.yaml"
JAEGER_CONFIG = REPO / "telemetry/jaeger/jaeger.yaml"
PROMETHEUS_DOCKER_CONFIG = REPO / "telemetry/prometheus/prometheus.docker.yml"
HEALTHCHECK_TABLE = REPO / "docker/healthchecks.yaml"
LOKI_CONFIG = REPO / "telemetry/loki/loki.yaml"
GRAFANA_PROVISIONING = REPO / "telemetry/grafana/provisioning"
POSTGRES_INIT = REPO / "docker/postgres/init-databases.sql"
DASHBOARDS_DIR = REPO / "dashboards/generated"

# Files that other engineers are writing while this stack is being built. The
# compose file needs them; until they land the tests that need them skip and
# say so (pytest -ra prints the reason). Any other missing file is a failure.
DELIVERED_LATER = {
    "loadtests/locustfile.py": "the locustfile comes with the load tests (issue 7)",
}

# Listen addresses: an endpoint with one of these hosts is the component's own.
OWN_HOSTS = frozenset({"0.0.0.0", "127.0.0.1", "localhost", "::", "[::]"})

Json = Any


def load_yaml(path: Path) -> Json:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


# ${env:NAME} or ${env:NAME:-default}, as the OpenTelemetry Collector (and so
# Jaeger v2) expands them in its configuration; $${...} is an escaped literal.
_ENV_REFERENCE = re.compile(r"(?<!\$)\$\{env:(?P<name>[A-Za-z_]\w*)(?::-(?P<default>[^}]*))?\}")


def env_references(obj: Json) -> dict[str, str | None]:
    """Every ``${env:NAME:-default}`` in a loaded config: {NAME: default or None}."""
    found: dict[str, str | None] = {}
    if isinstance(obj, dict):
        for value in obj.values():
            found |= env_references(value)
    elif isinstance(obj, list):
        for value in obj:
            found |= env_references(value)
    elif isinstance(obj, str):
        found |= {m["name"]: m["default"] for m in _ENV_REFERENCE.finditer(obj)}
    return found


def resolve_env(obj: Json, env: Mapping[str, str]) -> Json:
    """The config as the Collector reads it with ``env``: references expanded.

    A value that is one whole reference takes the type its text has in YAML
    (``${env:PORT:-8888}`` is the integer 8888), as the Collector's confmap
    does; a reference inside a longer string is spliced in as text. A variable
    that is neither set nor defaulted is an error here, not an empty string.
    """
    if isinstance(obj, dict):
        return {key: resolve_env(value, env) for key, value in obj.items()}
    if isinstance(obj, list):
        return [resolve_env(value, env) for value in obj]
    if not isinstance(obj, str):
        return obj

    def value_of(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        if name in env:
            return env[name]
        if default is None:
            raise KeyError(f"${{env:{name}}} is neither set nor given a default")
        return default

    whole = _ENV_REFERENCE.fullmatch(obj)
    if whole is not None:
        return yaml.safe_load(value_of(whole))
    return _ENV_REFERENCE.sub(value_of, obj)


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Json:
    """A Collector or Jaeger config with its ``${env:...}`` resolved (default: the defaults)."""
    return resolve_env(load_yaml(path), env or {})


def require_repo_file(relative: str) -> Path:
    """The repository file, or a skip naming who delivers it, or a failure."""
    path = REPO / relative
    if path.exists():
        return path
    if relative in DELIVERED_LATER:
        pytest.skip(f"{relative} does not exist yet: {DELIVERED_LATER[relative]}")
    pytest.fail(f"{relative} does not exist, but the stack refers to it")


# command -> Debian package that provides it
DEBIAN_PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "docker-compose": "docker-compose",
}


def tool(name: str) -> str:
    """The path of a command the tests need; fails naming the package when missing."""
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGES.get(name, name)
        pytest.fail(f"{name} is not installed: apt-get install --no-install-recommends {package}")
    return path


# -------------------------------------------------------------------- dockerfiles
@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def keywords(self) -> list[str]:
        return [kw for kw, _ in self.instructions]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile; continuation lines joined."""
    logical = re.sub(r"\\\n", " ", text)
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = " ".join(rest.split())
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(parts[0], name))
        elif not stages and keyword == "ARG":
            key, _, default = rest.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


# ----------------------------------------------------------------------- compose
@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    bind: bool  # False: a named volume


def mounts(service: Mapping[str, Json]) -> list[Mount]:
    """A service's volumes, short (``src:dst[:mode]``) or long syntax."""
    found = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, _, rest = entry.partition(":")
            target = rest.split(":")[0]
        else:
            source, target = str(entry.get("source", "")), str(entry["target"])
        bind = source.startswith((".", "/", "~"))
        found.append(Mount(source, target, bind))
    return found


def bind_source(source: str) -> Path:
    """The host path of a bind-mount source (relative to the compose file)."""
    return (COMPOSE_FILE.parent / source).resolve() if source.startswith(".") else Path(source)


def host_path(service: Mapping[str, Json], container_path: str) -> Path | None:
    """Where ``container_path`` comes from on the host, through the deepest bind mount."""
    path = PurePosixPath(container_path)
    best: Mount | None = None
    for mount in mounts(service):
        target = PurePosixPath(mount.target)
        covers = mount.bind and (path == target or target in path.parents)
        if covers and (best is None or len(target.parts) > len(PurePosixPath(best.target).parts)):
            best = mount
    if best is None:
        return None
    rest = path.relative_to(PurePosixPath(best.target))
    return bind_source(best.source) / rest


def environment(service: Mapping[str, Json]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def container_port(spec: Json) -> int:
    """The container side of a ``ports`` or ``expose`` entry."""
    if isinstance(spec, dict):
        return int(spec["target"])
    text = str(spec).split("/")[0]
    return int(text.rsplit(":", 1)[-1])


def listening_ports(compose: Mapping[str, Json], name: str) -> set[int]:
    """Ports a compose service declares it listens on: ports, expose, REDLINE_PORT."""
    service = compose["services"][name]
    ports = {container_port(p) for p in service.get("ports", [])}
    ports |= {container_port(p) for p in service.get("expose", [])}
    if "REDLINE_PORT" in environment(service):
        ports.add(int(environment(service)["REDLINE_PORT"]))
    return ports


def depends_on(service: Mapping[str, Json]) -> dict[str, str]:
    """{dependency: condition}; the short list form means service_started."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


_TAG = re.compile(r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")


def image_pin_problems(services: Mapping[str, Mapping[str, Json]]) -> list[str]:
    """Images pulled from a registry must name an explicit version tag (or digest)."""
    problems = []
    for name, service in services.items():
        if "build" in service:
            continue  # built here; its base images are checked in the Dockerfile
        image = service.get("image")
        if not image:
            problems.append(f"{name}: no image")
            continue
        if "@sha256:" in image:
            continue
        match = _TAG.search(image.rsplit("/", 1)[-1])
        tag = match.group("tag") if match else None
        if tag is None or tag == "latest" or not any(c.isdigit() for c in tag):
            problems.append(f"{name}: image {image!r} is not pinned to a version")
    return problems


# --------------------------------------------------------------------- endpoints
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://(?:[^@/\s]*@)?(?P<host>[A-Za-z0-9_.-]+):(?P<port>\d+)")
_HOST_PORT = re.compile(
    r"^(?P<host>[A-Za-z0-9_.-]*[A-Za-z][A-Za-z0-9_.-]*|\d+\.\d+\.\d+\.\d+):(?P<port>\d+)$"
)


@dataclass(frozen=True)
class Endpoint:
    where: str
    host: str
    port: int


def endpoints(obj: Json, where: str = "") -> Iterator[Endpoint]:
    """Every ``host:port`` in a config: URLs, bare ``host:port``, {host, port} maps."""
    if isinstance(obj, dict):
        if isinstance(obj.get("host"), str) and isinstance(obj.get("port"), int):
            yield Endpoint(where, obj["host"], obj["port"])
        for key, value in obj.items():
            yield from endpoints(value, f"{where}.{key}" if where else str(key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from endpoints(value, f"{where}[{i}]")
    elif isinstance(obj, str):
        urls = list(_URL.finditer(obj))  # also inside commands: "wget http://...:9090/-/ready"
        bare = _HOST_PORT.match(obj)
        for match in urls or ([bare] if bare else []):
            yield Endpoint(where, match.group("host"), int(match.group("port")))


def endpoint_problems(obj: Json, *, own: str, compose: Mapping[str, Json]) -> list[str]:
    """Endpoints that name no compose service, or a port that service does not listen on.

    Listen addresses (0.0.0.0, localhost, ...) must be ports ``own`` declares.
    """
    problems = []
    services = compose["services"]
    for ep in endpoints(obj):
        target = own if ep.host in OWN_HOSTS else ep.host
        if target not in services:
            problems.append(f"{ep.where}: {ep.host}:{ep.port} is not a compose service")
        elif ep.port not in listening_ports(compose, target):
            problems.append(
                f"{ep.where}: {ep.host}:{ep.port}, but {target} listens on "
                f"{sorted(listening_ports(compose, target))}"
            )
    return problems


# --------------------------------------------------------------------- collector
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")


def pipeline_problems(config: Mapping[str, Json]) -> list[str]:
    """OpenTelemetry Collector wiring: everything used is defined, everything defined is used.

    Each pipeline has a receiver and an exporter; a connector is the exporter of
    one pipeline and the receiver of another.
    """
    problems = []
    defined = {section: set(config.get(section) or {}) for section in SECTIONS}
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    as_exporter: set[str] = set()
    as_receiver: set[str] = set()
    service = config.get("service") or {}
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines: none")
    for name, spec in pipelines.items():
        signal = name.split("/")[0]
        if signal not in ("traces", "metrics", "logs", "profiles"):
            problems.append(f"pipeline {name}: {signal!r} is not a signal")
        spec = spec or {}
        for role, sections in (
            ("receivers", ("receivers", "connectors")),
            ("processors", ("processors",)),
            ("exporters", ("exporters", "connectors")),
        ):
            ids = spec.get(role) or []
            if role != "processors" and not ids:
                problems.append(f"pipeline {name}: no {role}")
            for component in ids:
                section = next((s for s in sections if component in defined[s]), None)
                if section is None:
                    problems.append(
                        f"pipeline {name}: {role[:-1]} {component} is not defined "
                        f"under {' or '.join(sections)}"
                    )
                    continue
                used[section].add(component)
                if section == "connectors":
                    (as_receiver if role == "receivers" else as_exporter).add(component)
    for extension in service.get("extensions") or []:
        if extension not in defined["extensions"]:
            problems.append(f"service.extensions: {extension} is not defined")
        used["extensions"].add(extension)
    for connector in sorted(defined["connectors"]):
        if connector not in as_exporter or connector not in as_receiver:
            problems.append(
                f"connector {connector}: must be an exporter in one pipeline and a "
                "receiver in another"
            )
    for section in SECTIONS:
        for component in sorted(defined[section] - used[section]):
            problems.append(f"{section}.{component} is defined but never used")
    return problems


# ----------------------------------------------------------------------- grafana
# Data sources Grafana knows without provisioning, and how dashboards say "mixed".
BUILT_IN_DATASOURCES = frozenset(
    {"-- Grafana --", "-- Mixed --", "-- Dashboard --", "grafana", "dashboard", "mixed"}
)
_VARIABLE = re.compile(r"^\$(\{[^}]+\}|\w+)$|^\[\[\w+\]\]$")


def datasource_refs(obj: Json, where: str = "") -> Iterator[tuple[str, str]]:
    """(where, uid-or-name) of every data source a dashboard (or config) points at."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            path = f"{where}.{key}" if where else str(key)
            if key == "datasource":
                if isinstance(value, str):
                    yield path, value
                elif isinstance(value, dict) and isinstance(value.get("uid"), str):
                    yield path, value["uid"]
            elif key == "datasourceUid" and isinstance(value, str):
                yield path, value
            yield from datasource_refs(value, path)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from datasource_refs(value, f"{where}[{i}]")


def unknown_datasource_refs(
    dashboard: Json, *, uids: AbstractSet[str], names: AbstractSet[str] = frozenset()
) -> list[str]:
    """References to data sources that are not provisioned (template variables are fine)."""
    problems = []
    for where, ref in datasource_refs(dashboard):
        if ref in uids or ref in names or ref in BUILT_IN_DATASOURCES or _VARIABLE.match(ref):
            continue
        problems.append(f"{where}: data source {ref!r} is not provisioned")
    return problems


# Grafana replaces $NAME / ${NAME} in provisioning files with environment
# variables; its own macros (${__value.raw}, $__tags, ...) must be written $$.
_UNESCAPED_MACRO = re.compile(r"(?<!\$)\$(\{__[\w.\[\]\"']+\}|__\w+)")


def unescaped_macros(text: str) -> list[str]:
    return [m.group(0) for m in _UNESCAPED_MACRO.finditer(text)]


# ------------------------------------------------------------- health checks
_SHELL_SEPARATORS = re.compile(r"\|\||&&|[;|]")


def healthcheck_needs(test: Json) -> tuple[bool, list[str]]:
    """(needs a shell, the programs it runs) of a compose ``healthcheck.test``.

    ``["CMD", prog, ...]`` runs ``prog`` directly; ``["CMD-SHELL", line]`` (or
    a plain string) runs ``/bin/sh -c line``, which needs a shell and the first
    word of each command on the line (``exit`` is the shell's own).
    """
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    kind, *rest = test
    if kind == "NONE":
        return False, []
    if kind == "CMD":
        return False, rest[:1]
    if kind != "CMD-SHELL":
        raise ValueError(f"unknown health check form {kind!r}")
    programs = []
    for command in _SHELL_SEPARATORS.split(" ".join(rest)):
        words = shlex.split(command)
        if words and words[0] not in ("exit", "true", "false", "test", "["):
            programs.append(words[0])
    return True, programs


def healthcheck_problems(
    name: str, image: str, test: Json, table: Mapping[str, Mapping[str, Json]]
) -> list[str]:
    """What a health check runs that its image, per the table, does not have."""
    if image not in table:
        return [f"{name}: image {image} is not in {HEALTHCHECK_TABLE.name}"]
    entry = table[image]
    needs_shell, programs = healthcheck_needs(test)
    problems = []
    if needs_shell and not entry["shell"]:
        problems.append(f"{name}: the shell form needs /bin/sh, which {image} does not have")
    for program in programs:
        if program not in entry["commands"]:
            problems.append(f"{name}: {image} has no {program} (it has {entry['commands']})")
    return problems


# ----------------------------------------------------------- real programs
def go_binary(name: str) -> Path:
    """The cached Collector or Jaeger build; a failure that says how to build it."""
    path = binaries.binary_path(name)
    if path is None:
        program = binaries.PROGRAMS[name]
        pytest.fail(
            f"{program.name} ({program.release}) is not built: run "
            "`.venv/bin/python -m redline.binaries` (needs Go; `make test` does it)"
        )
    return path


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the configs' own variables, plus ``extra``."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOL_", "JAEGER_"))}
    return {**keep, **extra}


@contextlib.contextmanager
def running(
    argv: list[str],
    ready_url: str,
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 20,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv``, wait until ``ready_url`` answers 2xx, stop it afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env) if env else None
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{argv[0]} exited {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(ready_url, timeout=1):  # noqa: S310 (loopback)
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{ready_url} not ready after {timeout:.0f} s:\n{log.read_text()}")
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------- compose, on loopback
@dataclass
class LoopbackPorts:
    """Free loopback ports standing in for compose's (service, port) pairs."""

    taken: dict[tuple[str, int], int] = field(default_factory=dict)

    def __call__(self, service: str, port: int) -> int:
        if (service, port) not in self.taken:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.taken[(service, port)] = int(s.getsockname()[1])
        return self.taken[(service, port)]


def loopback_env(
    config: Json, *, own: str, compose: Mapping[str, Json], ports: LoopbackPorts
) -> dict[str, str]:
    """The environment that runs a compose-side config on this machine's loopback.

    Each ``${env:...}`` default is read as compose would use it: a listen host
    becomes 127.0.0.1, a port ``own`` declares becomes a free port, and a
    ``service:port`` (bare or in a URL) becomes 127.0.0.1 and that service's
    stand-in port, so two programs started this way find each other as they
    would by their container names.
    """
    env: dict[str, str] = {}
    for name, default in env_references(config).items():
        if default is None:
            continue
        if default in OWN_HOSTS:
            env[name] = "127.0.0.1"
        elif default.isdigit() and int(default) in listening_ports(compose, own):
            env[name] = str(ports(own, int(default)))
        else:
            match = _URL.search(default) or _HOST_PORT.match(default)
            if match and match["host"] in compose["services"]:
                host, port = match["host"], int(match["port"])
                env[name] = default.replace(f"{host}:{port}", f"127.0.0.1:{ports(host, port)}")
    return env


def healthcheck_url(service: Mapping[str, Json], *, own: str, ports: LoopbackPorts) -> str:
    """The URL a compose health check probes, moved to the service's stand-in port."""
    (arg,) = [a for a in service["healthcheck"]["test"] if "://" in a]
    url = urlsplit(arg[arg.index("http") :])  # also "-health.url=http://..."
    assert url.hostname in OWN_HOSTS, arg
    assert url.port is not None, arg
    return f"http://127.0.0.1:{ports(own, url.port)}{url.path}"
