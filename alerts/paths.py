"""Where the alerting files live, for Prometheus configs and tests to load.

Production Prometheus loads ``rule_files(NORMAL)``: the hand-written rules in
``rules/`` and the generated SLO rules in ``generated/normal/``. Live tests and
chaos experiments load ``rule_files(COMPRESSED)``, which swaps in
``generated/compressed/`` (never both: they record the same series names).
As globs: ``alerts/rules/*.yml`` plus ``alerts/generated/<profile>/*.yml``.
"""

from __future__ import annotations

from pathlib import Path

from alerts.slo import NORMAL, Profile

ALERTS_DIR = Path(__file__).resolve().parent
RULES_DIR = ALERTS_DIR / "rules"
GENERATED_DIR = ALERTS_DIR / "generated"
TESTS_DIR = ALERTS_DIR / "tests"
GENERATED_TESTS_DIR = TESTS_DIR / "generated"
RUNBOOKS_DIR = ALERTS_DIR / "runbooks"
ALERTMANAGER_CONFIG = ALERTS_DIR / "alertmanager.yml"
METRICS_CATALOG = ALERTS_DIR / "metrics_catalog.yaml"


def slo_rules_dir(profile: Profile) -> Path:
    return GENERATED_DIR / profile.name


def slo_rule_file(slo_name: str, profile: Profile) -> Path:
    # One file per SLO: promtool evaluates every rule a test loads at every
    # step, so a test that loads one SLO's rules runs four times faster.
    return slo_rules_dir(profile) / f"{slo_name}.yml"


def slo_test_file(slo_name: str, profile: Profile) -> Path:
    suffix = "" if profile is NORMAL else f".{profile.name}"
    return GENERATED_TESTS_DIR / f"{slo_name}{suffix}.test.yml"


def compressed_rule_file(rules_file: Path, profile: Profile) -> Path:
    """Where the time-compressed copy of a hand-written rules file is generated."""
    return slo_rules_dir(profile) / f"handwritten-{rules_file.name}"


def rule_files(profile: Profile = NORMAL) -> list[Path]:
    """Every rules file Prometheus should load for ``profile``.

    Production loads the hand-written rules as written; a compressed profile
    loads their generated copies instead (never both: same alert names).
    """
    handwritten = sorted(RULES_DIR.glob("*.yml")) if profile is NORMAL else []
    return [*handwritten, *sorted(slo_rules_dir(profile).glob("*.yml"))]


def all_rule_files() -> list[Path]:
    """Every rules file in the repository, for checks that cover all profiles."""
    return sorted([*RULES_DIR.glob("*.yml"), *GENERATED_DIR.glob("*/*.yml")])


def rule_test_files() -> list[Path]:
    return sorted(TESTS_DIR.glob("**/*.test.yml"))
