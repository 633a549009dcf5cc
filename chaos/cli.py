"""``redline chaos``: list experiments, run them against a running stack, run the fault proxy.

    redline chaos list
    redline chaos run payments-slow [--state-dir .redline] [--out DIR]
    redline chaos run --all
    redline chaos validate chaos/experiments/*.yaml
    redline chaos proxy --name payments --listen 127.0.0.1:18004 \\
        --upstream 127.0.0.1:8004 --api 127.0.0.1:8474

Each run writes ``journal.json`` (Chaos Toolkit's journal, plus Redline's
verdicts) and ``report.md`` into its own folder, prints a verdict per probe
as it goes, and exits 1 if any experiment failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from chaos.context import DEFAULT_STATE_DIR, StackInfo, StackNotRunning, stack
from chaos.runner import InvalidExperiment, load_experiment, run_experiment, validate

EXPERIMENTS = Path(__file__).resolve().parent / "experiments"


def experiment_files(directory: Path = EXPERIMENTS) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml"))


def find(name: str, directory: Path = EXPERIMENTS) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml", ".json") and path.exists():
        return path
    for candidate in experiment_files(directory):
        if candidate.stem == name:
            return candidate
    known = ", ".join(p.stem for p in experiment_files(directory))
    raise SystemExit(f"redline chaos: no experiment {name!r} (known: {known})")


def resolve_configuration(experiment: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The experiment's ``configuration`` (literals and ``{type: env}``), then ``overrides``."""
    resolved: dict[str, Any] = {}
    for key, value in (experiment.get("configuration") or {}).items():
        if isinstance(value, dict) and value.get("type") == "env":
            resolved[key] = os.environ.get(value["key"], value.get("default"))
        else:
            resolved[key] = value
    resolved.update({k: v for k, v in overrides.items() if v not in (None, "")})
    return resolved


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "redline_state_dir": str(Path(args.state_dir).resolve()),
        "fault_proxy_url": args.proxy_url,
        "jaeger_url": args.jaeger_url,
        "grafana_url": args.grafana_url,
    }
    with contextlib.suppress(StackNotRunning):
        info = stack(overrides)
        # Backends `redline up` started itself, unless told otherwise.
        for key, component in (("jaeger_url", "jaeger"), ("grafana_url", "grafana")):
            if not overrides[key] and info.running(component):
                overrides[key] = info.url(component)
    for item in args.var:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"redline chaos: --var {item!r}: expected KEY=VALUE")
        overrides[key] = value
    return overrides


def cmd_list(args: argparse.Namespace) -> int:
    for path in experiment_files(Path(args.dir)):
        experiment = load_experiment(path)
        evidence: dict[str, Any] = next(
            (e for e in experiment.get("extensions", []) if e.get("name") == "redline"), {}
        )
        print(f"{path.stem:<22} {experiment.get('title', '')}")
        if evidence:
            print(f"{'':<22}   fault: {evidence.get('fault', '-')}")
            print(f"{'':<22}   alert: {evidence.get('alert', '-')}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.files] or experiment_files()
    bad = 0
    for path in paths:
        problems = validate(load_experiment(path))
        print(f"{path}: {'ok' if not problems else '; '.join(problems)}")
        bad += bool(problems)
    return 1 if bad else 0


def missing_components(experiment: dict[str, Any], running: StackInfo) -> list[str]:
    """The components the experiment's ``requires`` names that the stack does not run."""
    evidence: dict[str, Any] = next(
        (e for e in experiment.get("extensions", []) if e.get("name") == "redline"), {}
    )
    return [c for c in evidence.get("requires", []) if not running.running(c)]


def cmd_run(args: argparse.Namespace) -> int:
    names = [p.stem for p in experiment_files(Path(args.dir))] if args.all else args.names
    if not names:
        raise SystemExit("redline chaos run: name experiments, or --all")
    overrides = _overrides(args)
    try:
        running = stack(overrides)
    except StackNotRunning as exc:
        raise SystemExit(f"redline chaos: {exc}") from None
    out = Path(args.out) if args.out else Path(overrides["redline_state_dir"]) / "chaos-runs"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: list[tuple[str, bool, Path]] = []
    skipped: list[tuple[str, list[str]]] = []
    for name in names:
        path = find(name, Path(args.dir))
        experiment = load_experiment(path)
        missing = missing_components(experiment, running)
        if missing:
            # Named on the command line it is an error; in --all, not this stack's to run.
            print(
                f"redline chaos: {path.stem} needs {', '.join(missing)}, which this stack does "
                f"not run (`redline up --replicas ...`, see the experiment's description)",
                file=sys.stderr,
            )
            if args.all:
                skipped.append((path.stem, missing))
            else:
                results.append((path.stem, False, out))
            continue
        run_dir = out / f"{stamp}-{path.stem}"
        try:
            journal = run_experiment(
                experiment, resolve_configuration(experiment, overrides), run_dir
            )
        except InvalidExperiment as exc:
            print(f"redline chaos: {path}: {exc}", file=sys.stderr)
            results.append((path.stem, False, run_dir))
            continue
        results.append((path.stem, bool(journal["redline"]["passed"]), run_dir))
        print(f"  report: {run_dir / 'report.md'}\n")
        if journal["status"] == "interrupted":
            break
    if len(results) + len(skipped) > 1:
        print("summary:")
        for name, passed, run_dir in results:
            print(f"  {'PASS' if passed else 'FAIL'}  {name:<22} {run_dir}")
        for name, missing in skipped:
            print(f"  SKIP  {name:<22} needs {', '.join(missing)}")
    return 0 if results and all(passed for _, passed, _ in results) else 1


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT")
    return host or "127.0.0.1", int(port)


def cmd_proxy(args: argparse.Namespace) -> int:
    from chaos.proxy import FaultProxy, ProxyServer

    async def serve() -> None:
        proxy = FaultProxy(args.name, args.upstream, args.listen)
        server = await ProxyServer([proxy], args.api).start()
        print(
            f"fault proxy {args.name}: {proxy.listen[0]}:{proxy.port} -> "
            f"{args.upstream[0]}:{args.upstream[1]}; API {server.url}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(serve())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redline chaos", description="Chaos experiments against a running Redline stack."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = sub.add_parser("list", help="the experiments, with their fault and alert")
    listing.add_argument("--dir", default=str(EXPERIMENTS))
    listing.set_defaults(func=cmd_list)

    check = sub.add_parser("validate", help="check experiment files without running them")
    check.add_argument("files", nargs="*")
    check.set_defaults(func=cmd_validate)

    run = sub.add_parser("run", help="run experiments against the stack in --state-dir")
    run.add_argument("names", nargs="*", help="experiment names (see `list`) or files")
    run.add_argument("--all", action="store_true", help="every experiment, in name order")
    run.add_argument("--dir", default=str(EXPERIMENTS), help="where experiments are")
    run.add_argument("--state-dir", default=os.environ.get("REDLINE_STATE_DIR", DEFAULT_STATE_DIR))
    run.add_argument("--out", help="where run folders go (default: <state-dir>/chaos-runs)")
    run.add_argument("--proxy-url", default=os.environ.get("REDLINE_FAULT_PROXY_URL"))
    run.add_argument("--jaeger-url", default=os.environ.get("REDLINE_JAEGER_URL"))
    run.add_argument("--grafana-url", default=os.environ.get("REDLINE_GRAFANA_URL"))
    run.add_argument(
        "--var", action="append", default=[], metavar="KEY=VALUE", help="configuration"
    )
    run.set_defaults(func=cmd_run)

    proxy = sub.add_parser("proxy", help="run a TCP fault proxy with a Toxiproxy-like API")
    proxy.add_argument("--name", required=True, help="the dependency's name, e.g. payments")
    proxy.add_argument("--listen", type=_address, required=True, metavar="HOST:PORT")
    proxy.add_argument("--upstream", type=_address, required=True, metavar="HOST:PORT")
    proxy.add_argument("--api", type=_address, default=("127.0.0.1", 8474), metavar="HOST:PORT")
    proxy.set_defaults(func=cmd_proxy)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
