"""Against the real stack: an interrupted experiment leaves no fault behind, and a violated
hypothesis says which probe and by how much.

The interrupted runs are `python -m chaos run` subprocesses that get a real
SIGTERM or SIGINT while their faults are in force, as an operator's Ctrl-C
or a CI timeout would deliver it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from chaos.context import stack
from chaos.runner import ExperimentFailed, assert_passed, run_experiment
from services.chassis.app import database_name
from services.chassis.pgserver import EmbeddedPostgres
from tests.harness import ADMIN_HEADERS, ROOT, wait_until

EXPERIMENTS = Path(__file__).parent / "experiments"
pytestmark = pytest.mark.slow


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ChaosRun:
    """`python -m chaos run FILE` in the background, its output collected line by line."""

    def __init__(self, experiment: Path, configuration: dict[str, Any], out: Path) -> None:
        self.out = out
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chaos",
                "run",
                str(experiment),
                "--state-dir",
                configuration["redline_state_dir"],
                "--proxy-url",
                configuration["fault_proxy_url"],
                "--out",
                str(out),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # As a background job of a shell script starts it: SIGINT ignored,
            # so Python installs no KeyboardInterrupt of its own.
            preexec_fn=_ignore_sigint,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, text: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError("chaos run exited early:\n" + "\n".join(self.lines))
            return any(text in line for line in self.lines)

        wait_until(seen, timeout=timeout, interval=0.1, message=lambda: "\n".join(self.lines[-20:]))

    def interrupt(self, signum: int, timeout: float = 60) -> int:
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"chaos run still running {timeout:g} s after signal {signum}:\n"
                + "\n".join(self.lines[-30:])
            ) from None
        self._reader.join(timeout=5)
        return code

    def journal(self) -> dict[str, Any]:
        [path] = self.out.glob("*/journal.json")
        data: dict[str, Any] = json.loads(path.read_text())
        return data


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def sessions(configuration: dict[str, Any], application: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(stack(configuration).dsn(database_name("inventory")))
        try:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application
            )
            return n
        finally:
            await conn.close()

    return asyncio.run(count())


def breaker(url: str, name: str) -> str:
    snapshot = httpx.get(f"{url}/admin/resilience", headers=ADMIN_HEADERS).json()
    state: str = next(b for b in snapshot["circuit_breakers"] if b["name"] == name)["state"]
    return state


def test_sigterm_mid_experiment_reverts_every_fault(
    chaos_env: dict[str, Any], configuration: dict[str, Any], tmp_path: Path
) -> None:
    s = chaos_env["stack"]
    proxy_api = configuration["fault_proxy_url"]
    accounts_pid = s.pids()["accounts"]
    run = ChaosRun(EXPERIMENTS / "every-fault-then-wait.yaml", configuration, tmp_path)
    try:
        run.wait_for("wait-to-be-interrupted")
        # Every fault is in force before the signal, or the test proves nothing.
        assert httpx.get(f"{s.url('payments-ops')}/admin/faults", headers=ADMIN_HEADERS).json()[
            "faults"
        ]
        assert httpx.get(f"{proxy_api}/proxies/payments/toxics").json()
        assert process_state(accounts_pid) == "T"
        assert sessions(configuration, "chaos-lock") == 1
        assert breaker(s.url("gateway-ops"), "accounts") == "forced_open"
        code = run.interrupt(signal.SIGTERM)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            os.kill(accounts_pid, signal.SIGCONT)
    assert code == 1
    journal = run.journal()
    assert journal["status"] == "interrupted"
    assert journal["redline"]["interrupted_by"] == "SIGTERM"
    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded"] * 6
    assert [e["key"] for e in journal["redline"]["safety_net"]] == ["cpu-hog"]
    hog_pids = next(r for r in journal["run"] if r["activity"]["name"] == "burn-a-core")["output"][
        "pids"
    ]

    assert (
        httpx.get(f"{s.url('payments-ops')}/admin/faults", headers=ADMIN_HEADERS).json()["faults"]
        == []
    )
    assert httpx.get(f"{proxy_api}/proxies/payments/toxics").json() == []
    assert process_state(accounts_pid) != "T"
    assert httpx.get(f"{s.url('accounts')}/health/ready").status_code == 200
    assert sessions(configuration, "chaos-lock") == 0
    assert breaker(s.url("gateway-ops"), "accounts") == "closed"
    assert not [p for p in hog_pids if Path(f"/proc/{p}").exists()], "the CPU hog was stopped"
    # The saga pause is gone too: an order goes through without being held.
    from chaos.probes import canary_orders

    assert canary_orders(count=1, within=10, configuration=configuration)["placed"] == 1


def test_ctrl_c_while_postgres_is_down_starts_it_again(
    chaos_env: dict[str, Any], configuration: dict[str, Any], tmp_path: Path
) -> None:
    info = stack(configuration)
    server = EmbeddedPostgres(info.pg_data_dir, port=info.port("postgres"))
    run = ChaosRun(EXPERIMENTS / "postgres-stopped-then-wait.yaml", configuration, tmp_path)
    try:
        run.wait_for('→ {"stopped_pid"')
        assert not server.running()
        code = run.interrupt(signal.SIGINT)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
        if not server.running():
            server.start()
    assert code == 1
    journal = run.journal()
    assert journal["status"] == "interrupted"
    assert journal["redline"]["interrupted_by"] == "SIGINT"
    assert server.running()
    from chaos.probes import services_ready

    assert services_ready(within=30, configuration=configuration)["count"] == 0


def test_a_violated_hypothesis_names_the_probe_and_by_how_much(
    configuration: dict[str, Any], tmp_path: Path
) -> None:
    impossible = {
        "title": "The catalog answers in a microsecond",
        "description": "A tolerance no real service meets.",
        "steady-state-hypothesis": {
            "title": "instant catalog",
            "probes": [
                {
                    "type": "probe",
                    "name": "catalog-in-a-microsecond",
                    "tolerance": {"type": "range", "target": "max_ms", "range": [0, 0.001]},
                    "provider": {
                        "type": "python",
                        "module": "chaos.probes",
                        "func": "catalog_answers",
                        "arguments": {"requests": 3},
                    },
                }
            ],
        },
        "method": [
            {
                "type": "action",
                "name": "never-runs",
                "provider": {
                    "type": "python",
                    "module": "chaos.actions",
                    "func": "clear_all_faults",
                },
            }
        ],
    }
    journal = run_experiment(impossible, configuration, tmp_path / "run", log=lambda _: None)
    with pytest.raises(ExperimentFailed) as failure:
        assert_passed(journal)
    message = str(failure.value)
    assert "probe 'catalog-in-a-microsecond': max_ms=" in message
    assert "is above 0.001 by" in message
    assert journal["run"] == [], "the method does not run when the steady state does not hold"
