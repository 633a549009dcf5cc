"""`redline load compare`'s statistics on synthetic samples: shifts found, noise not."""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter
from pathlib import Path

import pytest

from loadtests import bootstrap, compare, results
from loadtests.bootstrap import Histogram


def _histogram(values: list[float]) -> Histogram:
    # Locust's rounding: whole ms below 100, two significant digits above.
    def rounded(ms: float) -> float:
        return float(round(ms)) if ms < 100 else float(round(ms, -len(str(int(ms))) + 2))

    return sorted(Counter(rounded(v) for v in values).items())


def _latencies(seed: int, n: int, median_ms: float = 40.0, sigma: float = 0.5) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(0, sigma) * median_ms for _ in range(n)]


def test_the_fast_bootstrap_draws_the_same_percentiles_as_resampling_and_sorting() -> None:
    h = _histogram(_latencies(1, 400))
    fast = bootstrap.resampled_quantiles(h, 0.95, 3000, random.Random(2))
    naive = bootstrap.naive_resampled_quantiles(h, 0.95, 600, random.Random(3))
    assert statistics.mean(fast) == pytest.approx(statistics.mean(naive), rel=0.02)
    assert statistics.stdev(fast) == pytest.approx(statistics.stdev(naive), rel=0.15)
    assert bootstrap.percentile_interval(fast, 0.9) == pytest.approx(
        bootstrap.percentile_interval(naive, 0.9), rel=0.05
    )


def test_quantile_is_the_nearest_rank() -> None:
    h = [(1.0, 50), (2.0, 45), (10.0, 5)]
    assert bootstrap.quantile(h, 0.5) == 1.0
    assert bootstrap.quantile(h, 0.95) == 2.0
    assert bootstrap.quantile(h, 0.96) == 10.0


def test_a_clear_shift_is_beyond_noise_and_breaks_a_ten_percent_allowance() -> None:
    base = _histogram(_latencies(10, 600))
    slower = _histogram([v * 1.5 for v in _latencies(11, 600)])
    change = bootstrap.quantile_change(base, slower, 0.95)
    assert change.beyond_noise
    assert change.ratio_low > 1.1
    assert compare.parse_allowance("p95=10%").broken_by(change)


def test_identical_distributions_are_not_flagged() -> None:
    h = _histogram(_latencies(20, 600))
    for q in (0.5, 0.95, 0.99):
        change = bootstrap.quantile_change(h, h, q)
        assert not change.beyond_noise
        assert change.diff_low <= 0 <= change.diff_high


def test_false_positive_rate_over_seeded_same_distribution_pairs_is_near_the_level() -> None:
    """40 pairs of independent samples of one distribution; a 95% interval: ~5% flagged."""
    pairs = 40
    flagged = gated = 0
    allowance = compare.parse_allowance("p95=10%")
    for seed in range(pairs):
        a = _histogram(_latencies(1000 + seed, 500))
        b = _histogram(_latencies(2000 + seed, 500))
        change = bootstrap.quantile_change(a, b, 0.95, resamples=2000, seed=seed)
        flagged += change.beyond_noise
        gated += allowance.broken_by(change)
    assert flagged / pairs <= 0.15, f"{flagged} of {pairs} same-distribution pairs flagged"
    assert gated == 0, f"{gated} of {pairs} same-distribution pairs failed the p95=10% gate"


def test_a_thirty_percent_shift_is_found_in_most_seeded_pairs() -> None:
    pairs, found = 20, 0
    for seed in range(pairs):
        a = _histogram(_latencies(3000 + seed, 500))
        b = _histogram([v * 1.3 for v in _latencies(4000 + seed, 500)])
        found += bootstrap.quantile_change(a, b, 0.95, resamples=2000, seed=seed).beyond_noise
    assert found >= 0.8 * pairs, f"found in {found} of {pairs}"


def test_a_combined_allowance_needs_both_the_share_and_the_milliseconds() -> None:
    fast = _histogram(_latencies(30, 600, median_ms=4))
    slower = _histogram([v * 1.5 for v in _latencies(31, 600, median_ms=4)])
    change = bootstrap.quantile_change(fast, slower, 0.95)
    assert compare.parse_allowance("p95=10%").broken_by(change)
    assert not compare.parse_allowance("p95=10%+20ms").broken_by(change), "a few ms: no"


def test_error_ratio_changes_use_a_score_interval() -> None:
    assert bootstrap.error_ratio_change(0, 1000, 50, 1000).beyond_noise
    assert not bootstrap.error_ratio_change(1, 1000, 2, 1000).beyond_noise
    assert not bootstrap.error_ratio_change(0, 40, 0, 40).beyond_noise
    assert compare.parse_allowance("errors=1%").broken_by(
        bootstrap.error_ratio_change(0, 2000, 100, 2000)
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("p95=10%", compare.Allowance("p95=10%", 0.95, relative=0.10)),
        ("p99=+50ms", compare.Allowance("p99=+50ms", 0.99, absolute_ms=50.0)),
        ("p50=1s", compare.Allowance("p50=1s", 0.5, absolute_ms=1000.0)),
        ("errors=0.5%", compare.Allowance("errors=0.5%", None, points=0.005)),
        ("p95=10%+20ms", compare.Allowance("p95=10%+20ms", 0.95, relative=0.1, absolute_ms=20.0)),
    ],
)
def test_allowances_parse(spec: str, expected: compare.Allowance) -> None:
    assert compare.parse_allowance(spec) == expected


@pytest.mark.parametrize(
    "spec", ["p95", "p95=10", "latency=10%", "errors=3ms", "p0=1%", "p95=10%+5%", "p95=1s+5ms"]
)
def test_a_bad_allowance_is_one_clear_error(spec: str) -> None:
    with pytest.raises(compare.CompareError, match="--max-regression"):
        compare.parse_allowance(spec)


def _write_run(folder: Path, endpoints: dict[str, tuple[list[float], int]], seconds: float) -> Path:
    """A run folder with results.json (and a traces.json naming one slow request per endpoint)."""
    folder.mkdir(parents=True)
    doc = {
        "format": results.FORMAT, "started_at": 1000.0, "stopped_at": 1000.0 + seconds,
        "host": "http://x", "model": "closed", "shape": "steady", "users": 5, "open_model": None,
        "endpoints": [
            {
                "method": key.split()[0], "name": key.split()[1], "requests": len(values),
                "failures": failures,
                "response_times_ms": {str(int(ms)): n for ms, n in _histogram(values)},
            }
            for key, (values, failures) in endpoints.items()
        ],
    }  # fmt: skip
    results.write(folder / "results.json", doc)
    slowest = [
        {"method": k.split()[0], "name": k.split()[1], "status": 201, "trace_id": f"{i:032x}",
         "duration_ms": max(v), "started_at": "t"}
        for i, (k, (v, _)) in enumerate(endpoints.items(), start=1)
    ]  # fmt: skip
    (folder / "traces.json").write_text(
        json.dumps({"slowest": slowest, "failures": [], "failures_not_listed": 0})
    )
    return folder


ORDERS = "POST /api/v1/orders"
PRODUCTS = "GET /api/v1/products"


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    base = _write_run(
        tmp_path / "base",
        {ORDERS: (_latencies(1, 300), 0), PRODUCTS: (_latencies(2, 900, 8), 0),
         "GET /api/v1/users/me": (_latencies(3, 10, 5), 0)},
        60,
    )  # fmt: skip
    cur = _write_run(
        tmp_path / "cur",
        {ORDERS: ([v + 300 for v in _latencies(4, 300)], 0),
         PRODUCTS: (_latencies(5, 900, 8), 0),
         "GET /api/v1/users/me": ([v * 3 for v in _latencies(6, 10, 5)], 0)},
        60,
    )  # fmt: skip
    return base, cur


def test_compare_flags_the_shifted_endpoint_only_and_lists_its_traces(
    two_runs: tuple[Path, Path],
) -> None:
    c, text = compare.run_comparison(*two_runs, ["p95=10%"])
    assert [e.key for e in c.regressed] == [ORDERS]
    (line,) = compare.verdict_lines(c)
    assert line.startswith(f"redline: REGRESSED {ORDERS}: p95 ")
    assert "beyond +10%" in line
    # Too few requests to judge, however much slower.
    me = next(e for e in c.endpoints if e.key == "GET /api/v1/users/me")
    assert not me.judged
    assert "(too few requests to judge)" in text
    assert f"redline trace {1:032x}" in text, "the regressed endpoint's slowest trace"
    assert f"redline trace {2:032x}" not in text, "no traces for an endpoint that did not regress"


def test_the_command_exits_1_with_one_line_per_regression_and_writes_html(
    two_runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, cur = two_runs
    assert compare.main([str(base), str(cur), "--max-regression", "p95=10%"]) == 1
    out = capsys.readouterr().out
    assert [ln for ln in out.splitlines() if ln.startswith("redline: REGRESSED")] == [
        ln for ln in out.splitlines() if ln.startswith(f"redline: REGRESSED {ORDERS}")
    ]
    html = (cur / "compare.html").read_text()
    assert html.count("<svg") == 3
    assert "<script" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # Without a gate, the comparison is information: exit 0.
    assert compare.main([str(base), str(cur)]) == 0


def test_same_run_against_itself_passes_the_gate(
    two_runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, _ = two_runs
    assert compare.main([str(base), str(base), "--max-regression", "p95=10%"]) == 0
    assert "redline: no regression beyond p95=10% on 2 endpoint(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing-a", "missing-b"], "no such run folder or file"),
        (["{base}", "{base}", "--max-regression", "p95"], "--max-regression"),
        (["{base}", "{base}", "--confidence", "2"], "--confidence"),
        (["{base}"], "the following arguments are required"),
    ],
)
def test_bad_arguments_are_one_line_not_a_trace(
    two_runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    base, _ = two_runs
    argv = [a.format(base=base) for a in argv]
    try:
        code = compare.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in err


def _drifting_run(
    seed: int, seconds: int = 24, per_second: int = 15
) -> tuple[Histogram, list[tuple[int, Histogram]]]:
    """A run whose every second has its own level (the machine's other work), as runs do."""
    rng = random.Random(seed)
    per: list[tuple[int, Histogram]] = []
    for s in range(seconds):
        level = rng.lognormvariate(0, 0.4)
        per.append((s, _histogram([level * v for v in _latencies(seed * 1000 + s, per_second)])))
    whole: Counter[float] = Counter()
    for _, h in per:
        whole.update(dict(h))
    return sorted(whole.items()), per


def test_resampling_blocks_of_seconds_keeps_same_build_drift_within_noise() -> None:
    """Seconds with their own level: single-request resampling cries wolf, blocks do not."""
    pairs, single, blocks = 10, 0, 0
    for seed in range(pairs):
        (a, a_sec), (b, b_sec) = _drifting_run(100 + seed), _drifting_run(200 + seed)
        changes, how = bootstrap.quantile_changes(
            a, b, (0.5,), base_seconds=a_sec, cur_seconds=b_sec, block_seconds=2,
            resamples=1000, seed=seed,
        )  # fmt: skip
        assert how == "blocks of 2 s"
        blocks += changes[0.5].beyond_noise
        single += bootstrap.quantile_change(a, b, 0.5, resamples=1000, seed=seed).beyond_noise
    assert blocks <= 2, f"blocks: {blocks} of {pairs} same-build pairs flagged"
    assert single > blocks, f"single requests flagged {single}, blocks {blocks}"


def test_blocks_still_find_a_clear_shift() -> None:
    a, a_sec = _drifting_run(7)
    b, b_sec = _drifting_run(8)
    slower = [(s, [(v * 2, n) for v, n in h]) for s, h in b_sec]
    whole = sorted((v * 2, n) for v, n in b)
    changes, _ = bootstrap.quantile_changes(
        a, whole, (0.95,), base_seconds=a_sec, cur_seconds=slower, block_seconds=2, resamples=1000
    )
    assert changes[0.95].ratio_low > 1.1


def test_the_timeline_adds_up_per_second_and_merges_workers() -> None:
    from loadtests.timeline import Timeline, locust_rounded

    assert [locust_rounded(x) for x in (4.4, 99.6, 147, 3432, 58760)] == [4, 100, 150, 3400, 59000]
    master, worker = Timeline(), Timeline()
    master.observe("GET", "/a", 1000.2, 5)
    worker.observe("GET", "/a", 1000.9, 5.2)
    worker.observe("GET", "/a", 1002.5, 147)
    worker.observe("POST", "/b", 1002.5, 1)
    master.merge(worker.drain())
    assert worker.cells == {}
    assert master.seconds("GET", "/a", 1000.1) == [[0, {"5": 2}], [2, {"150": 1}]]


def test_the_example_baseline_in_the_repository_reads_and_passes_against_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.harness import ROOT

    folder = ROOT / "loadtests" / "baselines" / "open-50-dev"
    r = results.load(folder)
    assert r.model == "open"
    assert {ORDERS, PRODUCTS} <= set(r.endpoints)
    assert all(e.seconds for e in r.endpoints.values()), "per-second histograms recorded"
    argv = [
        str(folder),
        str(folder),
        "--max-regression",
        "p95=10%",
        "--html",
        str(tmp_path / "c.html"),
    ]
    assert compare.main(argv) == 0
    out = capsys.readouterr().out
    assert "gateway (server) p50/p95/p99 ms:" in out, "its server.json is read"


def test_an_unreachable_jaeger_is_one_note_and_the_links_still_print(
    two_runs: tuple[Path, Path],
) -> None:
    from tests.harness import free_port

    jaeger = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    c, text = compare.run_comparison(*two_runs, ["p95=10%"], jaeger_url=jaeger)
    assert [e.key for e in c.regressed] == [ORDERS]
    assert f"{jaeger}/trace/{1:032x}" in text
    notes = [line for line in text.splitlines() if line.startswith("(trace links not checked:")]
    assert len(notes) == 1
    assert "Jaeger is not reachable" in notes[0]
    assert "not in Jaeger" not in text


def test_runs_that_offered_different_loads_say_so(two_runs: tuple[Path, Path]) -> None:
    base, cur = two_runs
    doc = json.loads((cur / "results.json").read_text())
    doc.update(model="open", open_model={"rate": 40.0, "process": "poisson"})
    results.write(cur / "results.json", doc)
    _, text = compare.run_comparison(base, cur, [])
    assert "note      the runs offered different loads (closed model, steady with 5 users" in text
    _, same = compare.run_comparison(base, base, [])
    assert "note " not in same


class _SlowJaeger:
    """Jaeger's trace API as the tail sampler fills it: a trace is there from its ``n``-th lookup."""

    def __init__(self, found_from: dict[str, int]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.lookups: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                trace_id = self.path.rsplit("/", 1)[-1]
                outer.lookups[trace_id] += 1
                there = outer.lookups[trace_id] >= found_from.get(trace_id, 10**9)
                body = json.dumps({"data": [{"traceID": trace_id}]}).encode() if there else b"{}"
                self.send_response(200 if there else 404)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_right_after_a_run_listed_traces_are_looked_up_until_the_tail_sampler_has_decided(
    two_runs: tuple[Path, Path],
) -> None:
    import time

    from loadtests.compare_report import check_in_jaeger

    c, _ = compare.run_comparison(*two_runs, ["p95=10%"])
    decided_late, never, kept, exemplar = (f"{i:032x}" for i in range(1, 5))
    c.traces = {ORDERS: [{"trace_id": t} for t in (decided_late, never, kept)]}
    c.exemplars = {ORDERS: [{"trace_id": exemplar}]}
    jaeger = _SlowJaeger({decided_late: 3, never: 10**9, kept: 1, exemplar: 1})
    naps: list[float] = []
    try:
        # The run stopped just now: look again (here without waiting) until it settles.
        note = check_in_jaeger(
            c, jaeger.url, settle=time.time() - c.current.stopped_at + 60,
            sleep=naps.append, clock=lambda: time.time() + 20 * len(naps),
        )  # fmt: skip
    finally:
        jaeger.close()
    assert note is None
    found = {r["trace_id"]: r["in_jaeger"] for r in (*c.traces[ORDERS], *c.exemplars[ORDERS])}
    assert found == {decided_late: True, never: False, kept: True, exemplar: True}
    # Found ones are not looked up again; the one never kept is "not in Jaeger" only
    # once the run has settled: lookups at 0, 20, 40 and 60 s (past the settling time).
    assert dict(jaeger.lookups) == {decided_late: 3, never: 4, kept: 1, exemplar: 1}
    assert len(naps) == 3
