"""The Dockerfile: one multi-stage image from uv.lock, non-root, health-checked on readiness."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from tests.stack_config.stack import DOCKERFILE, REPO, Stage, parse_dockerfile

HEALTHCHECK_SCRIPT = REPO / "docker/healthcheck.py"


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def test_dockerfile_parses_with_dockers_own_parser_into_the_same_instructions(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    official = pytest.importorskip(
        "dockerfile", reason="the `dockerfile` package (Docker's Go parser) is not installed"
    )
    commands = official.parse_file(str(DOCKERFILE))
    global_args, stages = dockerfile
    ours = ["ARG"] * len(global_args)
    for stage in stages:
        ours += ["FROM", *(kw for kw, _ in stage.instructions)]
    assert [c.cmd.upper() for c in commands] == ours
    # exec form (no shell between Docker and Python: signals reach the process)
    assert {c.cmd.upper(): c.json for c in commands if c.cmd.upper() in ("CMD", "HEALTHCHECK")} == {
        "CMD": True,
        "HEALTHCHECK": True,
    }


def test_builder_and_runtime_stages_use_the_same_pinned_python_311_slim_image(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    args, stages = dockerfile
    assert [s.name for s in stages] == ["builder", "runtime"]
    # The venv is copied across stages, so both must have Python at the same path.
    assert {s.base for s in stages} == {"${PYTHON_IMAGE}"}
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", args["PYTHON_IMAGE"])


def test_builder_installs_exactly_the_locked_runtime_dependencies_with_the_pinned_uv(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    builder = dockerfile[1][0]
    runs = " ".join(builder.args("RUN"))
    assert "uv sync --frozen --no-default-groups" in runs  # no dev, no bench group
    assert "pip install" in runs
    assert "uv==${UV_VERSION}" in runs
    makefile_uv = re.search(r"^UV_VERSION := (\S+)", (REPO / "Makefile").read_text(), re.M)
    assert makefile_uv is not None
    assert f"UV_VERSION={makefile_uv.group(1)}" in builder.args("ARG")
    assert any(a.startswith("pyproject.toml uv.lock") for a in builder.args("COPY"))


def test_runtime_stage_holds_only_the_venv_and_every_package_of_the_project(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    runtime = dockerfile[1][1]
    copies = runtime.args("COPY")
    assert "--from=builder /opt/venv /opt/venv" in copies
    copied = {c.split()[0].rstrip("/") for c in copies if not c.startswith("--from")}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert packages <= copied
    assert copied - packages == {"docker/healthcheck.py"}


def test_every_copied_path_exists_and_is_not_excluded_by_dockerignore(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".tools", ".redline"} <= ignored
    for stage in dockerfile[1]:
        for copy in stage.args("COPY"):
            if copy.startswith("--from"):
                continue
            *sources, _dest = copy.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert Path(source).parts[0] not in ignored, f"{source} is in .dockerignore"


def test_the_service_runs_as_an_unprivileged_user_over_root_owned_code(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    runtime = dockerfile[1][1]
    keywords = [kw for kw, _ in runtime.instructions]
    users = runtime.args("USER")
    assert users
    assert users[-1] not in ("root", "0")
    last_copy = max(i for i, kw in enumerate(keywords) if kw == "COPY")
    assert keywords.index("USER") > last_copy  # code copied as root, not writable by the service


def test_health_check_probes_readiness_and_default_command_starts_the_gateway(
    dockerfile: tuple[dict[str, str], list[Stage]],
) -> None:
    runtime = dockerfile[1][1]
    (check,) = runtime.args("HEALTHCHECK")
    assert "/usr/local/lib/redline/healthcheck.py" in check
    assert "COPY docker/healthcheck.py /usr/local/lib/redline/healthcheck.py" in [
        f"COPY {c}" for c in runtime.args("COPY")
    ]
    assert runtime.args("CMD") == ['["python", "-m", "services.gateway"]']
    env = " ".join(runtime.args("ENV"))
    assert "REDLINE_HOST=0.0.0.0" in env
    assert "PATH=/opt/venv/bin:$PATH" in env


# ------------------------------------------------------------- the probe
class _Handler(BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def http_server(status: int) -> Iterator[tuple[int, list[str]]]:
    class Handler(_Handler):
        pass

    Handler.status = status
    Handler.paths = []
    handler = Handler
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler.paths
    finally:
        server.shutdown()
        server.server_close()


def run_probe(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT), *args],
        env={"REDLINE_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_probe_is_healthy_when_readiness_answers_200() -> None:
    with http_server(200) as (port, paths):
        assert run_probe(port).returncode == 0
    assert paths == ["/health/ready"]


def test_probe_is_unhealthy_while_readiness_answers_503() -> None:
    with http_server(503) as (port, _):
        result = run_probe(port)
    assert result.returncode == 1
    assert "503" in result.stderr


def test_probe_is_unhealthy_when_nothing_listens() -> None:
    with http_server(200) as (port, _):
        pass  # closed again: the port refuses connections now
    assert run_probe(port).returncode == 1


def test_probe_checks_the_url_it_is_given_instead() -> None:
    with http_server(200) as (port, paths):
        assert run_probe(1, f"http://127.0.0.1:{port}/").returncode == 0
    assert paths == ["/"]
