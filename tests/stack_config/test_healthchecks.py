"""Every health check runs only what its image has, per docker/healthchecks.yaml.

A check that calls a program its image lacks never passes, and through
``depends_on: service_healthy`` it holds back everything started after it:
Loki's ``wget`` check on a distroless image did exactly that. No Docker engine
runs here, so the table (with its sources) stands in for the images; for the
two images this repository builds, the table is also read back against their
Dockerfiles.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import dockerfile  # type: ignore[import-not-found, unused-ignore]  # Docker's Go parser
import pytest

from redline import binaries
from tests.stack_config.stack import (
    DOCKERFILE,
    HEALTHCHECK_TABLE,
    REPO,
    healthcheck_needs,
    healthcheck_problems,
    load_yaml,
    parse_dockerfile,
)

COLLECTOR_DOCKERFILE = REPO / "telemetry/collector/distribution/Dockerfile"


@pytest.fixture(scope="module")
def table() -> dict[str, dict[str, Any]]:
    images = load_yaml(HEALTHCHECK_TABLE)["images"]
    assert isinstance(images, dict)
    return images


def test_every_compose_health_check_runs_only_what_its_image_has(
    services: dict[str, Any], table: dict[str, dict[str, Any]]
) -> None:
    checked = {name: svc for name, svc in services.items() if "healthcheck" in svc}
    assert checked, "no health checks at all"
    problems = []
    for name, svc in checked.items():
        problems += healthcheck_problems(name, svc["image"], svc["healthcheck"]["test"], table)
    assert problems == []


def test_the_redline_images_own_health_check_runs_only_what_it_has(
    table: dict[str, dict[str, Any]],
) -> None:
    _args, stages = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    (check,) = stages[-1].args("HEALTHCHECK")
    exec_form = json.loads(check[check.index("CMD") + len("CMD") :])
    assert healthcheck_problems("Dockerfile", "redline:dev", ["CMD", *exec_form], table) == []


def test_the_table_lists_exactly_the_images_compose_runs_each_with_its_source(
    services: dict[str, Any], table: dict[str, dict[str, Any]]
) -> None:
    assert set(table) == {svc["image"] for svc in services.values()}
    for image, entry in table.items():
        assert len(entry["source"]) > 40, f"{image}: say where the facts come from"
        assert isinstance(entry["shell"], bool), image
        assert entry["commands"], image


@pytest.mark.parametrize(
    ("image", "dockerfile"),
    [("redline:dev", DOCKERFILE), ("redline-otelcol:dev", COLLECTOR_DOCKERFILE)],
    ids=["redline", "otelcol"],
)
def test_rows_of_the_images_built_here_agree_with_their_dockerfiles(
    services: dict[str, Any], table: dict[str, dict[str, Any]], image: str, dockerfile: Path
) -> None:
    entry = table[image]
    assert REPO / entry["built_from"] == dockerfile
    args, stages = parse_dockerfile(dockerfile.read_text(encoding="utf-8"))
    assert stages[-1].base == entry["base"]
    base_image = args[entry["base"][2:-1]]  # ${NAME} -> its ARG default
    # What the row claims follows from the base: Alpine has busybox's sh and
    # wget, Debian slim has dash and (the Python image) python, neither wget.
    if base_image.startswith("alpine:"):
        assert entry["shell"]
        assert "wget" in entry["commands"]
    elif "-slim" in base_image:
        assert entry["shell"]
        assert "wget" not in entry["commands"]
        assert base_image.startswith("python:")
        assert "python" in entry["commands"]
    else:
        pytest.fail(f"{dockerfile.name}: no rule for the base image {base_image}")
    for name, svc in services.items():
        if svc["image"] == image:
            build = svc["build"]
            assert REPO / build["context"] / build["dockerfile"] == dockerfile, name


def test_collector_image_builds_the_sources_and_flags_redline_binaries_builds(
    table: dict[str, dict[str, Any]],
) -> None:
    args, stages = parse_dockerfile(COLLECTOR_DOCKERFILE.read_text(encoding="utf-8"))
    build, runtime = stages
    program = binaries.PROGRAMS["otelcol"]
    assert COLLECTOR_DOCKERFILE.parent == program.module_dir
    # Exactly the files the native build's cache key hashes: go.mod, go.sum, *.go.
    assert build.args("COPY") == ["go.mod go.sum ./", "*.go ./"]
    (go_build,) = [run for run in build.args("RUN") if "go build" in run]
    native = (REPO / "redline/binaries.py").read_text()
    assert '"-trimpath", "-ldflags=-s -w"' in native
    assert '-trimpath -ldflags="-s -w"' in go_build
    assert "GOFLAGS=-mod=readonly" in go_build
    assert "CGO_ENABLED=0" in go_build
    # The builder's Go is the release go.mod asks for.
    go_mod = (program.module_dir / "go.mod").read_text()
    wanted = re.search(r"^go (\d+\.\d+)", go_mod, re.M)
    assert wanted is not None
    assert re.fullmatch(rf"golang:{re.escape(wanted.group(1))}\.\d+", args["GO_IMAGE"])
    # Docker's own parser (the `dockerfile` package) reads the same
    # instructions, and the entry point in exec form: signals reach the Collector.
    official = [(c.cmd.upper(), c.json) for c in dockerfile.parse_file(str(COLLECTOR_DOCKERFILE))]
    ours = ["ARG"] * len(args) + [kw for st in stages for kw in ("FROM", *st.keywords())]
    assert [cmd for cmd, _ in official] == ours
    assert dict(official)["ENTRYPOINT"] is True
    # The runtime runs the binary the health check table names.
    (entrypoint,) = runtime.args("ENTRYPOINT")
    (binary,) = json.loads(entrypoint)
    assert binary in table["redline-otelcol:dev"]["commands"]
    assert f"--from=build /out/{Path(binary).name} {binary}" in runtime.args("COPY")


# ------------------------------------------------------------- the check itself
def test_check_rejects_the_wget_shell_check_on_the_distroless_loki_image(
    table: dict[str, dict[str, Any]],
) -> None:
    old = ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:3100/ready || exit 1"]
    problems = healthcheck_problems("loki", "grafana/loki:3.7.4", old, table)
    assert len(problems) == 2
    assert "/bin/sh" in problems[0]
    assert "no wget" in problems[1]


def test_check_rejects_an_image_missing_from_the_table(
    table: dict[str, dict[str, Any]],
) -> None:
    (problem,) = healthcheck_problems("x", "busybox:1.37", ["CMD", "true"], table)
    assert "not in healthchecks.yaml" in problem


def test_health_check_forms_name_the_programs_they_run() -> None:
    assert healthcheck_needs(["CMD", "/usr/bin/loki", "-health"]) == (False, ["/usr/bin/loki"])
    assert healthcheck_needs("wget -q -O- http://x/ || curl -f http://x/ || exit 1") == (
        True,
        ["wget", "curl"],
    )
    assert healthcheck_needs(["CMD-SHELL", "pg_isready -h 127.0.0.1 && true"]) == (
        True,
        ["pg_isready"],
    )
    assert healthcheck_needs(["NONE"]) == (False, [])
