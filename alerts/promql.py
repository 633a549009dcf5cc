"""Which series a PromQL expression reads, checked against the metrics catalog.

Parsing is done by ``promql-parser`` (Python bindings of GreptimeTeam's Rust
PromQL parser, compatible with Prometheus 2.45), not by regular expressions: a
regex cannot tell a metric name from a function, a label or a string literal.
Every vector selector in the tree is found, including those inside subqueries
and ``label_replace``.

A selector passes when its metric is one the platform exports (the catalog) or
one our recording rules produce, when every label it matches on exists on
that metric, and when a ``job="..."`` matcher names a job that exports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from alerts.paths import METRICS_CATALOG

# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
# Synthetic series Prometheus records per target.
SCRAPE_SERIES = ("up", "scrape_duration_seconds", "scrape_samples_scraped")

_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


@dataclass(frozen=True)
class Selector:
    """One vector selector: the metric name and its ``(label, op, value)`` matchers."""

    name: str | None
    matchers: tuple[tuple[str, str, str], ...]

    def equal(self, label: str) -> str | None:
        for name, op, value in self.matchers:
            if name == label and op == "=":
                return value
        return None


# MatchOp values are not hashable, so no dict.
_OPS = (
    (promql_parser.MatchOp.Equal, "="),
    (promql_parser.MatchOp.NotEqual, "!="),
    (promql_parser.MatchOp.Re, "=~"),
    (promql_parser.MatchOp.NotRe, "!~"),
)


def _op(op: promql_parser.MatchOp) -> str:
    return next(text for known, text in _OPS if known == op)


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in ``expr``; raises ``ValueError`` if it does not parse."""
    found: list[Selector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = tuple((m.name, _op(m.op), m.value) for m in node.matchers.matchers)
            name = node.name
            if name is None:
                name = next((v for n, op, v in matchers if n == "__name__" and op == "="), None)
            found.append(Selector(name, matchers))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


@dataclass(frozen=True)
class Series:
    labels: frozenset[str]
    # Jobs that export it; empty means "not restricted" (every target, recorded series).
    jobs: frozenset[str] = field(default_factory=frozenset)
    check_labels: bool = True


@dataclass(frozen=True)
class Catalog:
    series: Mapping[str, Series]

    @classmethod
    def load(cls, path: Path = METRICS_CATALOG, recorded: Iterable[str] = ()) -> Catalog:
        doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        groups: dict[str, list[str]] = doc["job_groups"]
        series: dict[str, Series] = {}
        for name, spec in doc["metrics"].items():
            labels = frozenset(spec.get("labels", [])) | TARGET_LABELS
            jobs = frozenset(j for g in spec["exported_by"] for j in groups.get(g, [g]))
            if spec["type"] == "histogram":
                for suffix in _HISTOGRAM_SUFFIXES:
                    extra = {"le"} if suffix == "_bucket" else set()
                    series[name + suffix] = Series(labels | extra, jobs)
            else:
                series[name] = Series(labels, jobs)
        for name in SCRAPE_SERIES:
            series[name] = Series(TARGET_LABELS)
        for name in recorded:
            series.setdefault(name, Series(frozenset(), check_labels=False))
        return cls(series)

    def problems(self, expr: str) -> list[str]:
        """What is wrong with ``expr``'s selectors; empty when all is well."""
        try:
            found = selectors(expr)
        except ValueError as exc:
            return [f"does not parse: {exc}"]
        issues: list[str] = []
        for sel in found:
            if sel.name is None:
                issues.append("a selector without a literal metric name cannot be checked")
                continue
            known = self.series.get(sel.name)
            if known is None:
                issues.append(f"{sel.name} is not in the metrics catalog")
                continue
            if known.check_labels:
                unknown = {n for n, _, _ in sel.matchers if n != "__name__"} - known.labels
                if unknown:
                    issues.append(f"{sel.name} has no label(s) {', '.join(sorted(unknown))}")
            job = sel.equal("job")
            if job is not None and known.jobs and job not in known.jobs:
                issues.append(f'{sel.name} is not exported by job="{job}"')
        return issues


def recorded_series(rule_files: Iterable[Path]) -> set[str]:
    """The names our recording rules write."""
    names: set[str] = set()
    for path in rule_files:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc["groups"]:
            names.update(r["record"] for r in group["rules"] if "record" in r)
    return names
