"""``redline load``: its options become one Locust command writing into one run folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loadtests import run
from tests.harness import ROOT


def _plan(*argv: str, folder: Path | None = None) -> run.Plan:
    return run.plan(run.build_parser().parse_args(list(argv)), folder)


def _value(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_a_named_shape_runs_headless_with_reports_in_the_run_folder(tmp_path: Path) -> None:
    p = _plan(
        "--host", "http://gw:8000/", "--shape", "ramp", "--users", "50", "--duration", "60s",
        "--runs-dir", str(tmp_path),
    )  # fmt: skip
    c = p.command
    assert c[:3] == [sys.executable, "-m", "locust"]
    assert _value(c, "--locustfile") == str(ROOT / "loadtests" / "locustfile.py")
    assert "--headless" in c
    assert _value(c, "--host") == "http://gw:8000"
    assert (_value(c, "--shape"), _value(c, "--users"), _value(c, "--run-time")) == (
        "ramp", "50", "60s"
    )  # fmt: skip
    assert _value(c, "--spawn-rate") == "5", "a tenth of the users per second by default"
    assert p.folder.parent == tmp_path
    assert p.folder.name.endswith("-ramp")
    assert _value(c, "--html") == str(p.html)
    assert _value(c, "--csv") == str(p.folder / "stats")
    assert p.stats_csv == p.folder / "stats_stats.csv"
    assert _value(c, "--trace-report") == str(p.traces)
    assert _value(c, "--prometheus-port") == "9646"


def test_thresholds_and_anything_after_a_double_dash_reach_locust(tmp_path: Path) -> None:
    c = _plan(
        "--max-error-ratio", "1%", "--max-p95", "/api/v1/products=200ms",
        "--max-p95", "POST /api/v1/orders=1s", "--max-p99", "Aggregated=2s",
        "--thresholds", "gate.toml", "--processes", "2", "--jaeger-url", "http://j:16686",
        "--", "--tags", "checkout", "--slowest", "5",
        folder=tmp_path / "run",
    ).command  # fmt: skip
    assert _value(c, "--max-error-ratio") == "1%"
    assert [c[i + 1] for i, a in enumerate(c) if a == "--max-p95"] == [
        "/api/v1/products=200ms",
        "POST /api/v1/orders=1s",
    ]
    assert _value(c, "--max-p99") == "Aggregated=2s"
    assert _value(c, "--thresholds") == "gate.toml"
    assert _value(c, "--processes") == "2"
    assert _value(c, "--jaeger-url") == "http://j:16686"
    assert c[-4:] == ["--tags", "checkout", "--slowest", "5"]


def test_two_runs_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    first = _plan("--runs-dir", str(tmp_path)).folder
    first.mkdir()
    second = _plan("--runs-dir", str(tmp_path)).folder
    assert second != first
    assert second.name.startswith(first.name)


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--duration", "soon"], "not a duration"),
        (["--host", "gw:8000"], "expected http(s)://host:port"),
        (["--shape", "sawtooth"], "invalid choice"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run.build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert complaint in capsys.readouterr().err


def test_only_the_locustfile_journeys_and_arrivals_import_locust() -> None:
    """Locust monkey-patches the process with gevent; run.py's caller must not get that."""
    probe = (
        "import sys\n"
        "import loadtests.run, loadtests.checks, loadtests.data, loadtests.metrics\n"
        "import loadtests.options, loadtests.shapes, loadtests.summary, loadtests.thresholds\n"
        "import loadtests.tracing, loadtests.open_model, loadtests.results, loadtests.timeline\n"
        "import loadtests.bootstrap, loadtests.compare, loadtests.compare_html, loadtests.server\n"
        "assert 'locust' not in sys.modules and 'gevent' not in sys.modules, 'locust imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
