"""The Go programs Redline runs, built from pinned modules and cached.

No registry ships an OpenTelemetry Collector or a Jaeger v2 binary this
project can install, but both build from Go modules:

* ``otelcol-redline``: ``telemetry/collector/distribution``, the upstream
  Collector with the components Redline's config names (the only Go Redline owns);
* ``jaeger``: ``telemetry/jaeger``, a go.mod whose only content is Jaeger
  v1.75.0 (= Jaeger 2.12) as a tool. Built from modules, it serves the query
  API but not the UI, whose assets come from a separate npm build;
* ``kustomize``: ``deploy/kubernetes/kustomize``, kustomize v5.8.2 as a tool,
  which renders the Kubernetes manifests for their tests.

A binary is cached under a key hashed from its go.mod, go.sum, Go sources and
the Go version, so a version bump rebuilds and a second run costs nothing. The
cache lives outside the checkout (``$REDLINE_CACHE_DIR``, else
``~/.cache/redline``), so fresh clones on one machine (CI) share it, as they
share Go's own module and build caches.

``python -m redline.binaries`` builds what is missing (``make up`` and
``make test`` run it); without Go it says what it skipped, in one line.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class GoProgram:
    name: str
    module_dir: Path
    package: str  # what `go build` builds, from inside module_dir
    release: str  # what users are told


PROGRAMS: dict[str, GoProgram] = {
    "otelcol": GoProgram(
        "otelcol-redline",
        ROOT / "telemetry" / "collector" / "distribution",
        ".",
        "OpenTelemetry Collector v0.165.0 (contrib v0.165.1 components)",
    ),
    "jaeger": GoProgram(
        "jaeger",
        ROOT / "telemetry" / "jaeger",
        "github.com/jaegertracing/jaeger/cmd/jaeger",
        "Jaeger v2.12 (module v1.75.0)",
    ),
}

# Programs the tests use and `redline up` does not start.
TOOLS: dict[str, GoProgram] = {
    # Renders deploy/kubernetes for the manifest tests (no kubectl here).
    "kustomize": GoProgram(
        "kustomize",
        ROOT / "deploy" / "kubernetes" / "kustomize",
        "sigs.k8s.io/kustomize/kustomize/v5",
        "kustomize v5.8.2",
    ),
}

ALL: dict[str, GoProgram] = {**PROGRAMS, **TOOLS}

HOW_TO_GET_GO = "install Go >= 1.26 (https://go.dev/dl/) and run `make up` again"


class BuildError(RuntimeError):
    """A build that failed; the message is one line, the log file has the rest."""


def cache_dir() -> Path:
    base = os.environ.get("REDLINE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "redline"
    )
    return Path(base) / "bin"


def go_command() -> str | None:
    return shutil.which("go")


def _go_version(go: str) -> str:
    return subprocess.run(
        [go, "version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def cache_key(program: GoProgram, go_version: str) -> str:
    digest = hashlib.sha256(go_version.encode())
    for path in sorted(program.module_dir.glob("*")):
        if path.name in ("go.mod", "go.sum") or path.suffix == ".go":
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def binary_path(name: str) -> Path | None:
    """The cached binary for the current sources and Go, or None if not built (or no Go)."""
    go = go_command()
    if go is None:
        return None
    program = ALL[name]
    path = cache_dir() / f"{program.name}-{cache_key(program, _go_version(go))}"
    return path if path.exists() else None


def build(name: str, *, say: Callable[[str], None] = print) -> Path:
    """Build ``name`` unless the cache has it; returns the binary's path."""
    go = go_command()
    if go is None:
        raise BuildError(f"cannot build {name}: `go` is not on PATH; {HOW_TO_GET_GO}")
    program = ALL[name]
    target = cache_dir() / f"{program.name}-{cache_key(program, _go_version(go))}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log = target.with_suffix(".log")
    say(
        f"building {program.name}: {program.release}, from pinned Go modules "
        f"(once; a cold build downloads the modules and takes minutes)"
    )
    started = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(30):
            say(f"  ... still building {program.name} ({time.monotonic() - started:.0f} s)")

    threading.Thread(target=heartbeat, daemon=True).start()
    partial = target.with_suffix(".partial")
    try:
        with log.open("wb") as out:
            code = subprocess.run(
                [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(partial), program.package],
                cwd=program.module_dir,
                env={**os.environ, "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"},
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
    finally:
        done.set()
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise BuildError(f"building {program.name} failed: {tail[0]} (full log: {log})")
    # Builds for other sources stay: checkouts of other commits on this
    # machine (worktrees, CI's clean clones) use the cache too.
    partial.replace(target)
    size = target.stat().st_size / 2**20
    say(f"built {program.name} in {time.monotonic() - started:.0f} s ({size:.0f} MiB): {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m redline.binaries",
        description="Build the Collector and Jaeger from pinned Go modules, when missing.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {sorted(ALL)}; default: all")
    parser.add_argument(
        "--require", action="store_true", help="exit 1 when Go is missing (the tests need both)"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ALL))
    if unknown:
        parser.error(f"unknown program {unknown[0]!r}; choose from {sorted(ALL)}")
    if go_command() is None:
        print(
            f"skipped: the Collector, Jaeger and kustomize (`go` is not on PATH; {HOW_TO_GET_GO})",
            file=sys.stderr,
        )
        return 1 if args.require else 0
    try:
        for name in args.names or ALL:
            build(name)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
