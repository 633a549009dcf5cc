"""`redline top`: the four dashboards' questions in a terminal, refreshed every few seconds.

Every number is a query from :mod:`dashboards.signals`, the module the
dashboards draw their panels from, with Grafana's variables expanded the way
:mod:`dashboards.queries` expands them for the live dashboard test. All the
queries of one refresh are evaluated at the same instant (``time=``), so the
rows agree with each other and a test can ask Prometheus the same question.

On a terminal the screen is redrawn in place with ``rich.live``; piped, or
with ``--once``, it prints plain lines, one fact per line, for scripts and
``grep``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from alerts.slo import LatencySLI
from alerts.slos import SLOS
from dashboards import signals
from dashboards.queries import substitute
from redline.console._sources import Alertmanager, Prometheus, SourceError
from redline.console.alerts import Alert
from redline.console.alerts import collect as collect_alerts

# Every calling service: the resilience dashboard's ``$service`` at "All".
ALL_JOBS = 'job=~"$service"'


@dataclass(frozen=True, order=True)
class Red:
    job: str
    route: str  # "" for the whole service
    rate: float  # requests/s
    error_ratio: float | None  # None without traffic
    p50: float | None  # seconds
    p99: float | None


@dataclass(frozen=True, order=True)
class Objective:
    name: str
    service: str
    kind: str  # availability | latency
    objective: float
    budget_left: float | None
    burn_rate: float | None


@dataclass(frozen=True, order=True)
class Breaker:
    job: str
    breaker: str
    state: str


@dataclass(frozen=True, order=True)
class Bulkhead:
    job: str
    bulkhead: str
    in_flight: float
    capacity: float | None
    rejections: float  # per second


@dataclass(frozen=True, order=True)
class GiveUp:
    job: str
    retrier: str
    outcome: str
    rate: float  # per second


@dataclass
class Snapshot:
    at: float
    window: str
    services: list[Red] = field(default_factory=list)
    routes: list[Red] = field(default_factory=list)
    slos: list[Objective] = field(default_factory=list)
    breakers: list[Breaker] = field(default_factory=list)
    bulkheads: list[Bulkhead] = field(default_factory=list)
    give_ups: list[GiveUp] = field(default_factory=list)
    targets_down: list[tuple[str, str]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


SETTLE_SECONDS = 1.0


def expand(expr: str, window: str) -> str:
    """A dashboard expression with its Grafana variables set as the console reads it."""
    return substitute(
        expr,
        {"__rate_interval": window, "__interval": window, "__range": window, "service": ".*"},
    )


class Collector:
    """Reads one :class:`Snapshot` per call from Prometheus and Alertmanager."""

    def __init__(
        self, prometheus: Prometheus, alertmanager: Alertmanager | None, window: str = "1m"
    ) -> None:
        self.prom = prometheus
        self.am = alertmanager
        self.window = window

    def queries(self) -> dict[str, str]:
        """Every expression one refresh evaluates, expanded; the test asks the same ones."""
        by_job, by_route = "job", "job, http_route"
        q = {
            "service_rate": signals.request_rate(by=by_job),
            "service_errors": signals.error_ratio(by=by_job),
            "service_p50": signals.latency(0.5, by=by_job),
            "service_p99": signals.latency(0.99, by=by_job),
            "route_rate": signals.request_rate(by=by_route),
            "route_errors": signals.error_ratio(by=by_route),
            "route_p50": signals.latency(0.5, by=by_route),
            "route_p99": signals.latency(0.99, by=by_route),
            "budget_left": signals.slo_budget_left(),
            "burn_rate": signals.BURN_RATE,
            "breaker_state": signals.breaker_state(ALL_JOBS),
            "bulkhead_in_flight": signals.bulkhead_in_flight(ALL_JOBS),
            "bulkhead_capacity": signals.bulkhead_capacity(ALL_JOBS),
            "bulkhead_rejections": signals.bulkhead_rejections(ALL_JOBS),
            "retry_give_ups": signals.retry_give_ups(ALL_JOBS),
            "targets_down": signals.TARGETS_DOWN_LIST,
        }
        return {k: expand(v, self.window) for k, v in q.items()}

    def collect(self, at: float | None = None) -> Snapshot:
        # A second in the past by default: a scrape's samples carry its start
        # time but land when it ends, so numbers for "now" could still change
        # after they are shown (a query for the same instant would disagree).
        at = time.time() - SETTLE_SECONDS if at is None else at
        snap = Snapshot(at=at, window=self.window)
        results: dict[str, list[dict[str, Any]]] = {}
        for key, expr in self.queries().items():
            try:
                results[key] = self.prom.query(expr, at)
            except SourceError as exc:
                if not snap.problems or snap.problems[-1] != str(exc):
                    snap.problems.append(str(exc))
                results[key] = []
        snap.services = _red(results, "service", ("job",))
        snap.routes = _red(results, "route", ("job", "http_route"))
        snap.slos = _objectives(results)
        codes = {code: text for code, _, text, _ in signals.BREAKER_STATES}
        snap.breakers = sorted(
            Breaker(m["job"], m["breaker"], codes.get(int(v), f"state {v:g}"))
            for m, v in _values(results["breaker_state"])
        )
        snap.bulkheads = _bulkheads(results)
        snap.give_ups = sorted(
            GiveUp(m["job"], m["retrier"], m["outcome"], v)
            for m, v in _values(results["retry_give_ups"])
        )
        snap.targets_down = sorted(
            (m.get("job", ""), m.get("instance", "")) for m, _ in _values(results["targets_down"])
        )
        try:
            snap.alerts, note = collect_alerts(self.prom, self.am)
            if note:
                snap.problems.append(note)
        except SourceError as exc:
            if str(exc) not in snap.problems:
                snap.problems.append(str(exc))
        return snap


def _values(result: list[dict[str, Any]]) -> Iterator[tuple[dict[str, str], float]]:
    for sample in result:
        yield sample["metric"], float(sample["value"][1])


def _number(v: float) -> float | None:
    return None if v != v else v  # NaN (0/0, no observations) → None


def _red(results: dict[str, list[dict[str, Any]]], level: str, keys: tuple[str, ...]) -> list[Red]:
    def table(name: str) -> dict[tuple[str, ...], float]:
        return {
            tuple(m.get(k, "") for k in keys): v for m, v in _values(results[f"{level}_{name}"])
        }

    rate, errors, p50, p99 = (table(n) for n in ("rate", "errors", "p50", "p99"))
    rows = []
    for key, r in rate.items():
        e = errors.get(key)
        rows.append(
            Red(
                job=key[0],
                route=key[1] if len(key) > 1 else "",
                rate=r,
                error_ratio=None if e is None else _number(e),
                p50=_number(p50[key]) if key in p50 else None,
                p99=_number(p99[key]) if key in p99 else None,
            )
        )
    return sorted(rows, key=lambda x: (x.job, -x.rate, x.route))


def _objectives(results: dict[str, list[dict[str, Any]]]) -> list[Objective]:
    left = {m.get("slo"): v for m, v in _values(results["budget_left"])}
    burn = {m.get("slo"): v for m, v in _values(results["burn_rate"])}
    return [
        Objective(
            name=slo.name,
            service=slo.service,
            kind="latency" if isinstance(slo.sli, LatencySLI) else "availability",
            objective=slo.objective,
            budget_left=_number(left[slo.name]) if slo.name in left else None,
            burn_rate=_number(burn[slo.name]) if slo.name in burn else None,
        )
        for slo in SLOS
    ]


def _bulkheads(results: dict[str, list[dict[str, Any]]]) -> list[Bulkhead]:
    def table(name: str) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for m, v in _values(results[name]):
            key = (m.get("job", ""), m.get("bulkhead", ""))
            out[key] = out.get(key, 0.0) + v  # one series per instance
        return out

    in_flight = table("bulkhead_in_flight")
    capacity = table("bulkhead_capacity")
    rejections = table("bulkhead_rejections")
    return [
        Bulkhead(
            job,
            name,
            in_flight[(job, name)],
            capacity.get((job, name)),
            rejections.get((job, name), 0.0),
        )
        for job, name in sorted(in_flight)
    ]


# -- rendering -----------------------------------------------------------------------
def fmt_rate(v: float) -> str:
    return f"{v:.2f}/s"


def fmt_ratio(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v * 100:.{digits}f}%"


def fmt_seconds(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.1f}ms" if v < 1 else f"{v:.2f}s"


def fmt_burn(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def plain_lines(snap: Snapshot) -> list[str]:
    """One fact per line, first word the kind: for scripts, pipes and tests."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(snap.at))
    out = [f"at {stamp} window {snap.window}"]
    for p in snap.problems:
        out.append(f"problem {p}")
    for r in snap.services:
        out.append(
            f"service {r.job} rate={fmt_rate(r.rate)} errors={fmt_ratio(r.error_ratio)} "
            f"p50={fmt_seconds(r.p50)} p99={fmt_seconds(r.p99)}"
        )
    for r in snap.routes:
        out.append(
            f"route {r.job} {r.route} rate={fmt_rate(r.rate)} errors={fmt_ratio(r.error_ratio)} "
            f"p50={fmt_seconds(r.p50)} p99={fmt_seconds(r.p99)}"
        )
    for s in snap.slos:
        out.append(
            f"slo {s.name} objective={s.objective:.1%} budget_left={fmt_ratio(s.budget_left, 1)} "
            f"burn_1h={fmt_burn(s.burn_rate)}"
        )
    for b in snap.breakers:
        out.append(f"breaker {b.job}->{b.breaker} {b.state}")
    for h in snap.bulkheads:
        cap = "?" if h.capacity is None else f"{h.capacity:g}"
        out.append(
            f"bulkhead {h.job}->{h.bulkhead} in_flight={h.in_flight:g}/{cap} "
            f"rejections={fmt_rate(h.rejections)}"
        )
    for g in (g for g in snap.give_ups if g.rate > 0):
        out.append(f"retry_give_up {g.job}->{g.retrier} {g.outcome} {fmt_rate(g.rate)}")
    out.append(f"targets_down {len(snap.targets_down)}")
    for job, instance in snap.targets_down:
        out.append(f"target_down {job} {instance}")
    for a in snap.alerts:
        subject = f" {a.subject}" if a.subject else ""
        out.append(
            f"alert {a.state} {a.name} severity={a.severity or '-'}{subject} runbook={a.runbook}"
        )
    return out


def render_rich(snap: Snapshot, *, max_routes: int = 12) -> Any:
    """The screen: RED by service and route, SLOs, resilience, targets and alerts."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def red_style(r: Red) -> str:
        if r.error_ratio and r.error_ratio > 0.01:
            return "bold red"
        return "yellow" if r.error_ratio else ""

    stamp = time.strftime("%H:%M:%S", time.localtime(snap.at))
    header = Text.assemble(
        ("redline top", "bold"),
        f"  {stamp}  rates over {snap.window}  ",
        ("Ctrl-C to quit", "dim"),
    )
    parts: list[Any] = [header]
    for p in snap.problems:
        parts.append(Text(p, style="bold red"))

    services = Table(title="Services", title_justify="left", expand=True, box=None)
    for col in ("service", "req/s", "5xx", "p50", "p99"):
        services.add_column(col, justify="left" if col == "service" else "right")
    for r in snap.services:
        services.add_row(
            r.job,
            fmt_rate(r.rate),
            fmt_ratio(r.error_ratio),
            fmt_seconds(r.p50),
            fmt_seconds(r.p99),
            style=red_style(r),
        )
    routes = Table(
        title=f"Busiest routes (of {len(snap.routes)})", title_justify="left", expand=True, box=None
    )
    for col in ("service", "route", "req/s", "5xx", "p50", "p99"):
        routes.add_column(col, justify="left" if col in ("service", "route") else "right")
    for r in sorted(snap.routes, key=lambda x: -x.rate)[:max_routes]:
        routes.add_row(
            r.job,
            r.route,
            fmt_rate(r.rate),
            fmt_ratio(r.error_ratio),
            fmt_seconds(r.p50),
            fmt_seconds(r.p99),
            style=red_style(r),
        )

    slos = Table(title="SLOs (30 days)", title_justify="left", expand=True, box=None)
    for col in ("objective", "target", "budget left", "burn 1h"):
        slos.add_column(col, justify="left" if col == "objective" else "right")
    for s in snap.slos:
        style = ""
        if s.burn_rate is not None and s.burn_rate >= 14.4:
            style = "bold red"
        elif s.budget_left is not None and s.budget_left < 0.25:
            style = "yellow"
        slos.add_row(
            s.name,
            f"{s.objective:.1%}",
            fmt_ratio(s.budget_left, 1),
            fmt_burn(s.burn_rate),
            style=style,
        )

    res = Table(title="Resilience", title_justify="left", expand=True, box=None)
    res.add_column("caller → dependency")
    res.add_column("breaker")
    res.add_column("bulkhead", justify="right")
    res.add_column("rejected", justify="right")
    res.add_column("retry give-ups", justify="right")
    bulk = {(h.job, h.bulkhead): h for h in snap.bulkheads}
    gave: dict[tuple[str, str], float] = {}
    for g in snap.give_ups:
        gave[(g.job, g.retrier)] = gave.get((g.job, g.retrier), 0.0) + g.rate
    keys = sorted({(b.job, b.breaker) for b in snap.breakers} | set(bulk) | set(gave))
    states = {(b.job, b.breaker): b.state for b in snap.breakers}
    for key in keys:
        h = bulk.get(key)
        state = states.get(key, "-")
        res.add_row(
            f"{key[0]} → {key[1]}",
            state,
            "-"
            if h is None
            else f"{h.in_flight:g}/{'?' if h.capacity is None else f'{h.capacity:g}'}",
            "-" if h is None else fmt_rate(h.rejections),
            fmt_rate(gave.get(key, 0.0)),
            style="" if state in ("closed", "-") else "bold red",
        )

    down = Text(
        "targets down: "
        + (", ".join(f"{j} ({i})" for j, i in snap.targets_down) if snap.targets_down else "none"),
        style="bold red" if snap.targets_down else "green",
    )
    alerts = Table(title="Alerts", title_justify="left", expand=True, box=None)
    for col in ("state", "alert", "severity", "subject", "runbook"):
        alerts.add_column(col)
    colour = {"firing": "bold red", "pending": "yellow", "silenced": "dim", "inhibited": "dim"}
    for a in snap.alerts:
        alerts.add_row(
            a.state, a.name, a.severity, a.subject, a.runbook, style=colour.get(a.state, "")
        )
    if not snap.alerts:
        alerts.add_row("none", "", "", "", "", style="green")
    parts += [services, routes, slos, res, down, alerts]
    return Group(*parts)


def run(
    collector: Collector,
    *,
    interval: float,
    once: bool,
    as_json: bool,
    out: IO[str] | None = None,
    is_tty: bool | None = None,
    iterations: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    out = out or sys.stdout
    tty = out.isatty() if is_tty is None else is_tty
    if once or as_json or not tty:
        n = 0
        while True:
            snap = collector.collect()
            if as_json:
                out.write(json.dumps(snap.to_json()) + "\n")
            else:
                out.write("\n".join(plain_lines(snap)) + "\n\n")
            out.flush()
            n += 1
            if once or (iterations is not None and n >= iterations):
                return 1 if snap.problems and not snap.services else 0
            sleep(interval)

    from rich.console import Console
    from rich.live import Live

    console = Console(file=out)

    def screen() -> Any:
        snap = collector.collect()
        # The busiest routes get the rows the other tables leave on the screen.
        rows = len(snap.problems) + len(snap.services) + len(snap.slos) + len(snap.alerts)
        rows += len(
            {(b.job, b.breaker) for b in snap.breakers}
            | {(h.job, h.bulkhead) for h in snap.bulkheads}
        )
        spare = console.size.height - rows - 14
        return render_rich(snap, max_routes=max(3, spare))

    try:
        with Live(screen(), console=console, screen=True, auto_refresh=False) as live:
            while True:
                sleep(interval)
                live.update(screen(), refresh=True)
    except KeyboardInterrupt:
        return 0
